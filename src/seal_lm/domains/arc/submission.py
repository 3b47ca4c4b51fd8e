"""ARC Prize submission files: ``{task_id: [{"attempt_1": grid, "attempt_2": grid}, ...]}``.

One entry per test input, in order. ARC Prize requires both attempts to be grids, so a missing
attempt (no view produced a grid, or all views agreed) is written as the 1x1 grid ``[[0]]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

PLACEHOLDER = [[0]]


def task_attempts(records: Sequence[dict]) -> list[dict]:
    """A task's submission entry from its :meth:`ArcDomain.score` records (one per probe)."""
    by_test = {}
    for record in records:
        by_test.setdefault(record["test_index"], record)  # every view of a test input carries the same attempts
    if sorted(by_test) != list(range(len(by_test))):
        raise ValueError(f"score records cover test inputs {sorted(by_test)}; pass every record of the task")
    return [{name: by_test[i][name] or PLACEHOLDER for name in ("attempt_1", "attempt_2")} for i in range(len(by_test))]


def write_submission(path: str | Path, records_by_task: Mapping[str, Sequence[dict]]) -> dict:
    """Write the submission for every task (task id -> its score records) to ``path``; returns it."""
    submission = {task_id: task_attempts(records) for task_id, records in records_by_task.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(submission), encoding="utf-8")
    os.replace(partial, path)  # a reader never sees a half-written file
    return submission
