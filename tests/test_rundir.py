"""Tests for seal_lm.runs.rundir: creating, resuming and refusing run directories, and the
append-only JSONL records that survive a kill mid-write."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import tempfile
import time

import pytest

from seal_lm.runs import rundir
from seal_lm.runs.rundir import CONFIG_FILE, LOCK_FILE, RecordsFormat, RunDir, RunDirError

CONFIG = {
    "data": "passages.json",
    "epochs": 10,
    "lr": 0.001,
    "conditions": ("base", "passage"),  # a tuple, as dataclasses.asdict gives for CLI configs
    "inner": {"rank": 32, "alpha": 64},
}


def with_changes(**changes):
    return {**CONFIG, **changes}


# ---------------------------------------------------------------------------------------------
# Opening, resuming, refusing
# ---------------------------------------------------------------------------------------------


def test_open_creates_config_with_environment(tmp_path):
    path = tmp_path / "runs" / "first"  # parents are created too
    run = RunDir.open(path, CONFIG)

    assert run.path == path
    saved = json.loads((path / CONFIG_FILE).read_text())
    assert saved["config"] == json.loads(json.dumps(CONFIG))
    environment = saved["environment"]
    assert "git_commit" in environment
    assert set(environment["versions"]) >= {"torch", "transformers", "peft", "numpy"}
    assert environment["versions"]["torch"]  # installed, so a version string


def test_reopening_with_the_same_config_resumes(tmp_path):
    """Tuples saved as JSON lists still count as the same config, and earlier records are kept."""
    with RunDir.open(tmp_path / "run", CONFIG) as first:
        first.append("records.jsonl", {"unit": "a"})
    config_before = (tmp_path / "run" / CONFIG_FILE).read_bytes()

    again = RunDir.open(tmp_path / "run", dict(CONFIG))

    assert again.records("records.jsonl") == [{"unit": "a"}]
    assert (tmp_path / "run" / CONFIG_FILE).read_bytes() == config_before  # not rewritten


def test_a_different_config_is_refused_naming_the_field(tmp_path):
    RunDir.open(tmp_path / "run", CONFIG)

    with pytest.raises(RunDirError) as caught:
        RunDir.open(tmp_path / "run", with_changes(epochs=2))

    message = str(caught.value)
    assert "epochs" in message
    assert "10" in message and "2" in message
    assert "same settings" in message
    assert "new --out" in message
    assert "lr:" not in message  # only the differing field is named


def test_a_nested_difference_is_named_by_its_path(tmp_path):
    RunDir.open(tmp_path / "run", CONFIG)
    with pytest.raises(RunDirError, match=r"inner\.rank"):
        RunDir.open(tmp_path / "run", with_changes(inner={"rank": 8, "alpha": 64}))


def test_an_added_or_removed_field_is_a_difference(tmp_path):
    RunDir.open(tmp_path / "run", CONFIG)
    with pytest.raises(RunDirError, match="judge_url"):
        RunDir.open(tmp_path / "run", with_changes(judge_url="http://judge"))
    smaller = {key: value for key, value in CONFIG.items() if key != "lr"}
    with pytest.raises(RunDirError, match="lr"):
        RunDir.open(tmp_path / "run", smaller)


def test_a_setting_added_since_resumes_at_its_default_only(tmp_path):
    RunDir.open(tmp_path / "run", CONFIG)  # made before "generator" existed
    defaults = {"generator": "hf", "lr": 0.5}
    RunDir.open(tmp_path / "run", with_changes(generator="hf"), defaults)
    with pytest.raises(RunDirError, match="generator"):
        RunDir.open(tmp_path / "run", with_changes(generator="vllm"), defaults)
    with pytest.raises(RunDirError, match="lr"):  # a recorded setting is compared as recorded, not as its default
        RunDir.open(tmp_path / "run", with_changes(generator="hf", lr=0.5), defaults)


FORMAT = RecordsFormat(version=2, changed="passage ids", last_commit="8c32063")


def test_a_run_written_before_its_records_format_changed_is_refused_before_its_config_is_compared(tmp_path):
    with RunDir.open(tmp_path / "run", CONFIG):  # format 1: no records_format in config.json
        pass

    for config in (CONFIG, with_changes(lr=0.5)):
        with pytest.raises(RunDirError) as info:
            RunDir.open(tmp_path / "run", config, records_format=FORMAT)
        assert str(info.value) == (
            f"{tmp_path / 'run'} was written by an earlier seal-lm whose passage ids differ (records format 1); "
            "start a new --out, or resume it with seal-lm at commit 8c32063."
        )


def test_a_run_in_the_current_records_format_resumes_and_records_it(tmp_path):
    with RunDir.open(tmp_path / "run", CONFIG, records_format=FORMAT) as run:
        run.append("records.jsonl", {"unit": "a"})
    assert json.loads((tmp_path / "run" / CONFIG_FILE).read_text())["records_format"] == 2

    with RunDir.open(tmp_path / "run", CONFIG, records_format=FORMAT) as again:
        assert again.records("records.jsonl") == [{"unit": "a"}]
    with pytest.raises(RunDirError, match="lr"):  # the config is still compared
        RunDir.open(tmp_path / "run", with_changes(lr=0.5), records_format=FORMAT)


def test_a_run_in_a_later_records_format_is_refused(tmp_path):
    with RunDir.open(tmp_path / "run", CONFIG, records_format=RecordsFormat(3, "question ids", "abc")):
        pass

    with pytest.raises(RunDirError, match=r"written by a later seal-lm \(records format 3, this one writes 2\)"):
        RunDir.open(tmp_path / "run", CONFIG, records_format=FORMAT)


def test_a_run_kind_without_a_records_format_records_none(tmp_path):
    with RunDir.open(tmp_path / "run", CONFIG):
        pass
    assert "records_format" not in json.loads((tmp_path / "run" / CONFIG_FILE).read_text())
    with RunDir.open(tmp_path / "run", CONFIG):
        pass


def test_a_non_empty_folder_that_is_not_a_run_is_refused(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")

    with pytest.raises(RunDirError, match="--out"):
        RunDir.open(folder, CONFIG)
    assert not (folder / CONFIG_FILE).exists()
    assert (folder / "thesis.tex").read_text() == "precious"


def test_an_existing_empty_folder_is_used(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    RunDir.open(folder, CONFIG)
    assert (folder / CONFIG_FILE).is_file()


def test_a_corrupt_config_file_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / CONFIG_FILE).write_text('{"config": {"epo')
    with pytest.raises(RunDirError, match="corrupt"):
        RunDir.open(tmp_path / "run", CONFIG)


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


def test_append_and_records_round_trip(tmp_path):
    run = RunDir.open(tmp_path / "run", CONFIG)
    written = [
        {"unit": "p0/base/0", "grades": [{"answer": "Paris", "f1": 1.0}]},
        {"unit": "p0/passage/0", "answer": "Zürich — 東京", "nested": {"x": [1, 2, None]}},
        {"unit": "p1/base/0", "text": "two\nlines"},
    ]
    for record in written:
        run.append("records.jsonl", record)

    assert run.records("records.jsonl") == written
    lines = (tmp_path / "run" / "records.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == written  # one JSON object per line


def test_records_of_a_missing_file_are_empty(tmp_path):
    run = RunDir.open(tmp_path / "run", CONFIG)
    assert run.records("records.jsonl") == []
    assert not (tmp_path / "run" / "records.jsonl").exists()


def test_a_torn_last_line_is_dropped_and_truncated(tmp_path):
    """A kill mid-write leaves a partial line; it is discarded so the next append starts cleanly."""
    run = RunDir.open(tmp_path / "run", CONFIG)
    run.append("records.jsonl", {"unit": "a"})
    run.append("records.jsonl", {"unit": "b"})
    file = tmp_path / "run" / "records.jsonl"
    complete = file.read_bytes()
    with open(file, "ab") as f:
        f.write(b'{"unit": "c", "grades": [{"ans')

    assert run.records("records.jsonl") == [{"unit": "a"}, {"unit": "b"}]
    assert file.read_bytes() == complete  # the torn bytes are gone from disk

    run.append("records.jsonl", {"unit": "c"})
    assert run.records("records.jsonl") == [{"unit": "a"}, {"unit": "b"}, {"unit": "c"}]
    assert [json.loads(line) for line in file.read_text().splitlines()] == [{"unit": u} for u in "abc"]


def test_a_torn_only_line_leaves_an_empty_file(tmp_path):
    run = RunDir.open(tmp_path / "run", CONFIG)
    file = tmp_path / "run" / "records.jsonl"
    file.write_bytes(b'{"unit": "a", "te')

    assert run.records("records.jsonl") == []
    assert file.read_bytes() == b""
    run.append("records.jsonl", {"unit": "a"})
    assert run.records("records.jsonl") == [{"unit": "a"}]


def test_a_corrupt_middle_line_is_an_error(tmp_path):
    run = RunDir.open(tmp_path / "run", CONFIG)
    file = tmp_path / "run" / "records.jsonl"
    file.write_text('{"unit": "a"}\n{"unit": "b", gar\n{"unit": "c"}\n')
    before = file.read_bytes()

    with pytest.raises(RunDirError, match="line 2"):
        run.records("records.jsonl")
    assert file.read_bytes() == before  # nothing is silently thrown away


# ---------------------------------------------------------------------------------------------
# Whole files
# ---------------------------------------------------------------------------------------------


def test_write_text_replaces_atomically_without_leftovers(tmp_path):
    run = RunDir.open(tmp_path / "run", CONFIG)
    run.write_text("results.md", "old table\n")
    target = run.write_text("results.md", "new table\n")

    assert target == tmp_path / "run" / "results.md"
    assert target.read_text() == "new table\n"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [CONFIG_FILE, "results.md", LOCK_FILE]


def test_write_json_and_jsonl_create_subfolders(tmp_path):
    run = RunDir.open(tmp_path / "run", CONFIG)
    run.write_json("predictions/base.json", {"q1": "Paris"})
    run.write_jsonl("answers.jsonl", [{"a": 1}, {"a": "é"}])

    assert json.loads((tmp_path / "run" / "predictions" / "base.json").read_text()) == {"q1": "Paris"}
    lines = (tmp_path / "run" / "answers.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [{"a": 1}, {"a": "é"}]
    assert [p.name for p in (tmp_path / "run" / "predictions").iterdir()] == ["base.json"]


def test_write_folder_renames_a_filled_staging_folder(tmp_path):
    run = RunDir.open(tmp_path / "run", CONFIG)

    target = run.write_folder("round-1/policy", lambda staging: (staging / "config.json").write_text("{}"))

    assert target == tmp_path / "run" / "round-1" / "policy"
    assert (target / "config.json").read_text() == "{}"
    assert [p.name for p in target.parent.iterdir()] == ["policy"]


def test_a_failed_write_folder_leaves_nothing(tmp_path):
    run = RunDir.open(tmp_path / "run", CONFIG)

    def fail(staging):
        (staging / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run.write_folder("round-1/policy", fail)
    assert list((tmp_path / "run" / "round-1").iterdir()) == []


# ---------------------------------------------------------------------------------------------
# One writer
# ---------------------------------------------------------------------------------------------


def test_a_second_open_of_an_open_run_is_refused_naming_the_holder(tmp_path):
    with RunDir.open(tmp_path / "run", CONFIG) as run:
        run.append("records.jsonl", {"unit": "a"})
        with pytest.raises(RunDirError, match=rf"open for writing by another process \(pid {os.getpid()}\)") as caught:
            RunDir.open(tmp_path / "run", CONFIG)
        assert "\n" not in str(caught.value)
        run.append("records.jsonl", {"unit": "b"})  # the first opener still writes

    with RunDir.open(tmp_path / "run", CONFIG) as again:  # closed: the lock went with it
        assert again.records("records.jsonl") == [{"unit": "a"}, {"unit": "b"}]


def test_the_lock_is_released_when_a_with_block_ends_in_an_error(tmp_path):
    with pytest.raises(ValueError):
        with RunDir.open(tmp_path / "run", CONFIG):
            raise ValueError("the work failed")
    RunDir.open(tmp_path / "run", CONFIG).close()


def _hold_open(path, ready):
    run = RunDir.open(path, CONFIG)  # open until the process is killed
    ready.set()
    while run:
        time.sleep(1)


def test_another_process_holding_the_run_is_named_and_a_kill_releases_it(tmp_path):
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    holder = context.Process(target=_hold_open, args=(tmp_path / "run", ready), daemon=True)
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(RunDirError, match=rf"pid {holder.pid}\)"):
            RunDir.open(tmp_path / "run", CONFIG)
    finally:
        holder.kill()
        holder.join(30)

    RunDir.open(tmp_path / "run", CONFIG).close()


# ---------------------------------------------------------------------------------------------
# What a kill leaves behind
# ---------------------------------------------------------------------------------------------


def test_a_creation_killed_while_writing_its_config_starts_afresh(tmp_path):
    """A kill during the first config write leaves the lock file and a partial config: not a foreign folder."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_FILE).write_text("12345")
    handle, partial = tempfile.mkstemp(
        dir=folder, prefix=f".{CONFIG_FILE}.", suffix=rundir.PARTIAL
    )  # as write_json names it
    os.write(handle, b'{"config": {"da')
    os.close(handle)

    with RunDir.open(folder, CONFIG):
        pass

    assert json.loads((folder / CONFIG_FILE).read_text())["config"] == json.loads(json.dumps(CONFIG))
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, LOCK_FILE]


def test_a_resumed_run_removes_the_partial_writes_a_kill_left_and_nothing_else(tmp_path):
    RunDir.open(tmp_path / "run", CONFIG).close()
    run_path = tmp_path / "run"
    (run_path / "predictions").mkdir()
    (run_path / "predictions" / ".base.json.k2j4_x9a.partial").write_text('{"q1": "Par')
    (run_path / ".answers.jsonl.a8b7c6d5.partial").write_text("")
    staging = run_path / "round-1" / ".policy.ab12cd34.partial"
    staging.mkdir(parents=True)
    (staging / "model.safetensors").write_bytes(b"half a model")
    for kept in (".notes", "draft.partial", "round-1/policy.partial"):  # not this tool's naming: never touched
        (run_path / kept).write_text("mine")

    with RunDir.open(run_path, CONFIG):
        pass

    left = sorted(str(p.relative_to(run_path)) for p in run_path.rglob("*"))
    assert left == [
        ".notes",
        CONFIG_FILE,
        "draft.partial",
        "predictions",
        "round-1",
        "round-1/policy.partial",
        LOCK_FILE,
    ]


# ---------------------------------------------------------------------------------------------
# A full disk
# ---------------------------------------------------------------------------------------------


def _full_disk(*args):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("write", ["append", "write_json"])
def test_a_full_disk_is_one_line_saying_what_filled_up_and_how_to_resume(tmp_path, monkeypatch, write):
    run = RunDir.open(tmp_path / "run", CONFIG)
    monkeypatch.setattr(rundir.os, "fsync", _full_disk)

    with pytest.raises(RunDirError) as caught:
        getattr(run, write)("records.jsonl", {"unit": "a"})

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("no space left on device writing ")
    assert str(tmp_path / "run" / "records.jsonl") in message
    assert "re-run the same command to resume" in message
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(rundir.PARTIAL)]  # no partial copy left


def test_a_full_disk_while_saving_a_folder_is_the_same_one_line(tmp_path):
    run = RunDir.open(tmp_path / "run", CONFIG)
    with pytest.raises(RunDirError, match=r"^no space left on device writing .*round-1/policy; free space"):
        run.write_folder("round-1/policy", _full_disk)
    assert list((tmp_path / "run" / "round-1").iterdir()) == []


def test_other_os_errors_are_not_disguised_as_a_full_disk(tmp_path, monkeypatch):
    run = RunDir.open(tmp_path / "run", CONFIG)
    monkeypatch.setattr(rundir.os, "fsync", lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):
        run.append("records.jsonl", {"unit": "a"})
