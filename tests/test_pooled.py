"""``seal eval knowledge --setting cpt``: the continued-pretraining setting, where each condition
trains one adapter on the pooled data of every passage and is probed on all their questions."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import text_id

import seal_lm.loops.evaluate as evaluate
from seal_lm.cli import main

PASSAGES = [
    {
        "title": f"Tower {i}",
        "context": f"Tower number {i} stands in the city of Paris and was finished in 18{80 + i}.",
        "questions": [{"question": f"Where is tower {i}?", "answer": "Paris"}],
    }
    for i in range(3)
]
EXTERNAL = [
    {
        "title": p["title"],
        "context": p["context"],
        "completions": [f"1. {p['title']} is in Paris.\n2. It is a tall tower."],
    }
    for p in PASSAGES
]


def run_cpt(model_dir: Path, folder: Path, out: Path, conditions: str = "base,passage,self-edit,external") -> int:
    data, external = folder / "data.json", folder / "external.json"
    data.write_text(json.dumps(PASSAGES))
    external.write_text(json.dumps(EXTERNAL))
    return main(
        [
            "eval",
            "knowledge",
            "--setting",
            "cpt",
            "--model",
            str(model_dir),
            "--data",
            str(data),
            "--external",
            str(external),
            "--conditions",
            conditions,
            "--epochs",
            "1",
            "--lora-rank",
            "4",
            "--self-edit-max-tokens",
            "16",
            "--answer-max-tokens",
            "4",
            "--bootstrap-samples",
            "100",
            "--out",
            str(out),
        ]
    )


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def test_each_condition_trains_one_adapter_on_all_passages(tmp_path, tiny_model_dir):
    assert run_cpt(tiny_model_dir, tmp_path, tmp_path / "run") == 0

    units = {r["unit"]: r for r in records(tmp_path / "run")}
    assert sorted(units) == ["pooled/base/0", "pooled/external/0", "pooled/passage/0", "pooled/self-edit/0"]
    assert units["pooled/base/0"]["train"] is None
    passage_sequences = units["pooled/passage/0"]["train"]["sequences"]
    assert passage_sequences == [f"{p['title']}\n{p['context']}" for p in PASSAGES], "every passage, one adapter"
    external_sequences = units["pooled/external/0"]["train"]["sequences"]
    assert len(external_sequences) == 3 * 3, "two items plus the passage, for each of three passages"
    for unit in units.values():
        assert [part["context_id"] for part in unit["contexts"]] == [text_id(p["context"]) for p in PASSAGES]
        assert all(len(part["grades"]) == 1 for part in unit["contexts"])
    summary = json.loads((tmp_path / "run" / "results.json").read_text())["conditions"]
    assert summary["passage"]["questions"] == 3 and summary["passage"]["mean_train_sequences"] == 3


def test_rerun_redoes_nothing_and_reuses_generated_self_edits(tmp_path, tiny_model_dir, monkeypatch):
    """Self-edits are cached per passage as they are written, so an interrupted pooled unit does
    not write them again."""
    out = tmp_path / "run"
    assert run_cpt(tiny_model_dir, tmp_path, out, conditions="self-edit") == 0
    cached = (out / evaluate.POOLED_SELF_EDITS).read_text()
    assert cached.count("\n") == 3
    (out / "records.jsonl").write_text("")  # as if killed after the self-edits, before training finished

    def no_generation(*args, **kwargs):
        raise AssertionError("a cached self-edit was generated again")

    monkeypatch.setattr(evaluate, "_write_self_edits", no_generation)
    assert run_cpt(tiny_model_dir, tmp_path, out, conditions="self-edit") == 0
    assert (out / evaluate.POOLED_SELF_EDITS).read_text() == cached
    assert len(records(out)) == 1
