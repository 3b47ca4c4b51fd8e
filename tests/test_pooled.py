"""``seal eval knowledge --setting cpt``: the continued-pretraining setting, where each condition
trains one adapter on the pooled data of every passage and is probed on all their questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import build_model, text_id

import seal_lm.adapt.full as full
import seal_lm.loops.evaluate as evaluate
from seal_lm.adapt.full import FullFineTune
from seal_lm.adapt.lora import InnerLoopSettings, TrainExample, TrainPlan
from seal_lm.cli import main
from seal_lm.model.generation import GenerationSettings

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


def run_cpt(
    model_dir: Path, folder: Path, out: Path, conditions: str = "base,passage,self-edit,external", *extra: str
) -> int:
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
            *extra,
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
    cached = (out / evaluate.WRITTEN).read_text()
    assert cached.count("\n") == 3
    (out / "records.jsonl").write_text("")  # as if killed after the self-edits, before training finished

    def no_generation(*args, **kwargs):
        raise AssertionError("a cached self-edit was generated again")

    monkeypatch.setattr(evaluate, "_write_self_edits", no_generation)
    assert run_cpt(tiny_model_dir, tmp_path, out, conditions="self-edit") == 0
    assert (out / evaluate.WRITTEN).read_text() == cached
    assert len(records(out)) == 1


PROBES = ["Topic: Tower 0\nQuestion: Where is tower 0?\nAnswer:"]
ANSWERS = GenerationSettings(max_new_tokens=6)


def test_a_full_fine_tune_trains_every_weight_and_restores_them_bit_for_bit(tiny_tokenizer, monkeypatch):
    model = build_model(len(tiny_tokenizer))
    base = {name: p.detach().clone() for name, p in model.named_parameters()}
    engine = FullFineTune(model, tiny_tokenizer)
    base_answers = engine.generate_with_base(PROBES, ANSWERS)
    trained = {}
    restore = engine.restore

    def note_trained_weights():
        trained.update({name: p.detach().clone() for name, p in model.named_parameters()})
        restore()

    monkeypatch.setattr(engine, "restore", note_trained_weights)
    plan = TrainPlan(tuple(TrainExample(p["context"]) for p in PASSAGES), InnerLoopSettings(lr=1e-3, epochs=4, seed=3))
    [result] = engine.train_and_answer([plan], PROBES, ANSWERS)

    assert all(not torch.equal(trained[name], base[name]) for name in base), "every weight was trained"
    assert result.stats.steps == 12 and result.stats.last_loss < result.stats.first_loss
    assert result.adapter_state == {}
    assert all(torch.equal(p, base[name]) for name, p in model.named_parameters()), "base weights restored exactly"
    assert engine.generate_with_base(PROBES, ANSWERS) == base_answers


def test_a_full_fine_tune_refuses_distillation(tiny_tokenizer):
    engine = FullFineTune(build_model(len(tiny_tokenizer)), tiny_tokenizer)
    plan = TrainPlan((TrainExample("Paris", context="Tower 0 is in Paris."),), InnerLoopSettings(objective="distill"))
    with pytest.raises(ValueError, match="sft objective only"):
        engine.train(plan)


def test_cpt_full_finetune_trains_all_weights_per_condition_and_resumes(tmp_path, tiny_model_dir, monkeypatch):
    """The base condition, asked after a condition trained all weights, answers as the untrained model does;
    a re-run trains nothing it has already recorded."""
    flags = ("--full-finetune", "--epochs", "4")
    out = tmp_path / "full"
    assert run_cpt(tiny_model_dir, tmp_path, out, "passage,base", *flags) == 0
    assert json.loads((out / "config.json").read_text())["config"]["full_finetune"] is True
    units = {r["unit"]: r for r in records(out)}
    assert list(units) == ["pooled/passage/0", "pooled/base/0"]
    train = units["pooled/passage/0"]["train"]
    assert train["steps"] == 4 * 3 and train["last_loss"] < train["first_loss"]
    assert run_cpt(tiny_model_dir, tmp_path, tmp_path / "untrained", "base") == 0
    [untrained] = records(tmp_path / "untrained")
    assert units["pooled/base/0"]["contexts"] == untrained["contexts"], "base weights restored after passage"

    def no_training(*args, **kwargs):
        raise AssertionError("a finished unit was trained again")

    monkeypatch.setattr(full, "train_on_plan", no_training)
    (out / "records.jsonl").write_text(json.dumps(units["pooled/passage/0"]) + "\n")  # killed before base
    assert run_cpt(tiny_model_dir, tmp_path, out, "passage,base", *flags) == 0
    passage, base = records(out)
    assert passage == units["pooled/passage/0"], "only the base unit ran again"
    assert base["unit"] == "pooled/base/0" and base["contexts"] == untrained["contexts"]
