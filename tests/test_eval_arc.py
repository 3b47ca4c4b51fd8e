"""``seal eval arc`` end to end on the tiny model and a small hand-made task file."""

from __future__ import annotations

import json

from seal_lm.cli import main
from seal_lm.domains.arc.config import TTTConfig, parse_config
from seal_lm.loops import evaluate

TASK = {
    "train": [
        {"input": [[1, 0], [0, 0]], "output": [[0, 1], [0, 0]]},
        {"input": [[0, 0], [2, 0]], "output": [[0, 0], [0, 2]]},
        {"input": [[3, 0], [3, 0]], "output": [[0, 3], [0, 3]]},
    ],
    "test": [{"input": [[0, 0], [4, 0]], "output": [[0, 0], [0, 4]]}],
}


def run_arc(tmp_path, tiny_model_dir, *extra: str) -> int:
    (tmp_path / "mirror.json").write_text(json.dumps(TASK))
    oracle = TTTConfig(learning_rate=1e-3, epochs=1).to_json()
    return main(
        [
            "eval",
            "arc",
            "--tasks",
            str(tmp_path / "mirror.json"),
            "--model",
            str(tiny_model_dir),
            "--k",
            "2",
            "--views",
            "2",
            "--max-examples",
            "6",
            "--lora-rank",
            "4",
            "--lora-alpha",
            "8",
            "--self-edit-max-tokens",
            "24",
            "--oracle-config",
            oracle,
            "--bootstrap-samples",
            "50",
            "--out",
            str(tmp_path / "run"),
            *extra,
        ]
    )


def test_every_condition_is_recorded_with_submissions(tmp_path, tiny_model_dir):
    assert run_arc(tmp_path, tiny_model_dir) == 0

    out = tmp_path / "run"
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [(r["condition"], r["sample"]) for r in records] == [
        ("icl", 0),
        ("ttt-oracle", 0),
        ("self-edit", 0),
        ("self-edit", 1),
    ]
    oracle = records[1]
    assert oracle["train"]["steps"] > 0 and all(len(g["raw_answer"]) >= 0 for g in oracle["grades"])
    assert all(len(r["grades"]) == 2 for r in records), "one record per view of the one test input"
    for record in records[2:]:  # the tiny model's configurations are random text: rejected, scored 0
        assert record["self_edit"]["text"] is not None
        assert record["rejected"] or record["train"]
    submission = json.loads((out / "submissions" / "ttt-oracle-0.json").read_text())
    assert list(submission) == ["mirror"] and set(submission["mirror"][0]) == {"attempt_1", "attempt_2"}
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["conditions"]) == {"icl", "ttt-oracle", "self-edit"}
    assert "solved" in (out / "results.md").read_text()


def test_each_task_is_recorded_once_before_any_work_on_it(tmp_path, tiny_model_dir, monkeypatch):
    """tasks.jsonl holds the task as given (demonstrations, test input and output) even when the run is stopped
    at its first unit, and a resumed run does not record it again."""

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "_run_group", stopped)
    assert run_arc(tmp_path, tiny_model_dir) == 130
    tasks = tmp_path / "run" / "tasks.jsonl"
    assert [json.loads(line) for line in tasks.read_text().splitlines()] == [{"task": "mirror", **TASK}]
    recorded = tasks.read_bytes()

    monkeypatch.undo()
    assert run_arc(tmp_path, tiny_model_dir) == 0
    assert tasks.read_bytes() == recorded
    assert (tmp_path / "run" / "results.json").is_file()


def test_a_bad_oracle_config_is_a_user_error(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "mirror.json").write_text(json.dumps(TASK))
    code = main(
        [
            "eval",
            "arc",
            "--tasks",
            str(tmp_path / "mirror.json"),
            "--model",
            str(tiny_model_dir),
            "--oracle-config",
            '{"training": {"learning_rate": 5}}',
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2
    assert "seal: error:" in capsys.readouterr().err


def test_train_arc_runs_a_round_and_carries_the_policy_over_when_nothing_solves(tmp_path, tiny_model_dir):
    """The tiny model writes no valid configuration, so nothing reaches reward 1: a round still
    completes, records every sample with its rejection reason, and saves the policy unchanged."""
    (tmp_path / "mirror.json").write_text(json.dumps(TASK))
    code = main(
        [
            "train",
            "arc",
            "--tasks",
            str(tmp_path / "mirror.json"),
            "--model",
            str(tiny_model_dir),
            "--contexts-per-round",
            "1",
            "--k",
            "2",
            "--views",
            "2",
            "--max-examples",
            "6",
            "--lora-rank",
            "4",
            "--self-edit-max-tokens",
            "24",
            "--out",
            str(tmp_path / "run"),
        ]
    )

    assert code == 0
    round_dir = tmp_path / "run" / "round-1"
    [record] = [json.loads(line) for line in (round_dir / "samples.jsonl").read_text().splitlines()]
    assert record["context_id"] == "mirror" and len(record["samples"]) == 2
    assert all(sample["rejected"] for sample, reward in zip(record["samples"], record["rewards"]) if reward is None)
    summary = json.loads((round_dir / "summary.json").read_text())
    assert summary["kept"] == 0 and summary["policy_carried_over"]
    assert (round_dir / "policy" / "config.json").is_file()


def test_select_subset_tries_small_grid_tasks_and_writes_the_solved_ids(tmp_path, tiny_model_dir):
    big = {
        "train": [{"input": [[1] * 12] * 12, "output": [[1]]}] * 2,
        "test": [{"input": [[1] * 12] * 12, "output": [[1]]}],
    }
    (tmp_path / "tasks.json").write_text(json.dumps({"mirror": TASK, "big": big}))
    code = main(
        [
            "arc",
            "select-subset",
            "--tasks",
            str(tmp_path / "tasks.json"),
            "--model",
            str(tiny_model_dir),
            "--max-grid-side",
            "10",
            "--views",
            "2",
            "--max-examples",
            "4",
            "--lora-rank",
            "4",
            "--out",
            str(tmp_path / "run"),
        ]
    )

    assert code == 0
    subset = json.loads((tmp_path / "run" / "subset.json").read_text())
    assert subset["tried"] == ["mirror"], "the 12x12 task is not a candidate"
    assert subset["selected"] in ([], ["mirror"])


def test_constrained_self_edits_always_parse_even_from_a_random_model(tmp_path, tiny_model_dir):
    """Under --constrained-self-edits the configuration is sampled under its JSON schema: the tiny
    random model, whose free text never parses, writes configurations that all parse."""
    assert (
        run_arc(
            tmp_path,
            tiny_model_dir,
            "--conditions",
            "self-edit",
            "--self-edit-max-tokens",
            "400",
            "--constrained-self-edits",
        )
        == 0
    )

    records = [json.loads(line) for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        parse_config(record["self_edit"]["text"])  # raises if the text is not a valid configuration
        assert record["rejected"] is None or "over the budget" in record["rejected"]  # the one check the schema leaves
        assert (record["train"] is not None) == (record["rejected"] is None)


def test_constrained_self_edits_are_refused_under_vllm(tmp_path, tiny_model_dir, capsys):
    assert run_arc(tmp_path, tiny_model_dir, "--constrained-self-edits", "--generator", "vllm") == 2
    assert "--constrained-self-edits runs with --generator hf" in capsys.readouterr().err
