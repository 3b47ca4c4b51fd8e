"""The batched engine trains K adapters at once and must match training them one by one."""

from __future__ import annotations

import pytest
import torch

from seal_lm.adapt.batched import BatchedInnerLoop
from seal_lm.adapt.lora import InnerLoop, InnerLoopSettings, TrainExample, TrainPlan, target_names
from seal_lm.model.generation import GenerationSettings
from seal_lm.model.loading import load_model

PROMPTS = ["Question: Where is the Eiffel Tower? Answer:", "Topic: Water\nQuestion: At what"]
GREEDY = GenerationSettings(max_new_tokens=6)


def plan(texts: list[str], seed: int, **settings) -> TrainPlan:
    base = dict(target_modules=("all-linear",), rank=4, alpha=8, lr=1e-2, epochs=3, seed=seed)
    return TrainPlan(tuple(TrainExample(t) for t in texts), InnerLoopSettings(**(base | settings)))


PLANS = [
    plan(["The Eiffel Tower is in Paris.", "It was completed in 1889 for the World's Fair."], seed=0),
    plan(["Genghis Khan founded the Mongol Empire."], seed=1, lr=5e-3, epochs=4),  # fewer steps, other lr
    plan(["Read the passage below.", "Water boils at 100 degrees.", "The Shah fled."], seed=2),
]


def as_sequential_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map PEFT's adapter names (``...q_proj.lora_A.candidate.weight``) to the batched engine's."""
    renamed = {}
    for name, tensor in state.items():
        module = name.removeprefix("base_model.model.").split(".lora_")[0]
        renamed[f"{module}.lora_{'a' if '.lora_A.' in name else 'b'}"] = tensor
    return renamed


@pytest.fixture
def engines(tiny_model_dir):
    sequential = load_model(str(tiny_model_dir))
    batched = load_model(str(tiny_model_dir))
    return InnerLoop(sequential.model, sequential.tokenizer), BatchedInnerLoop(batched.model, batched.tokenizer)


def test_batched_training_matches_one_by_one(engines):
    sequential, batched = engines

    one_by_one = sequential.train_and_answer(PLANS, PROMPTS, GREEDY)
    together = list(
        batched.train_and_answer_each(PLANS, PROMPTS, GREEDY)
    )  # train_and_answer's results, handed over one by one

    assert len(together) == len(one_by_one)
    for alone, joint in zip(one_by_one, together):
        expected = as_sequential_names(alone.adapter_state)
        assert expected.keys() == joint.adapter_state.keys()
        for name, tensor in expected.items():
            torch.testing.assert_close(joint.adapter_state[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
        assert joint.stats.steps == alone.stats.steps and joint.stats.tokens == alone.stats.tokens
        assert joint.stats.first_loss == pytest.approx(alone.stats.first_loss, rel=1e-5)
        assert joint.stats.last_loss == pytest.approx(alone.stats.last_loss, rel=1e-4)
        assert [a.text for a in joint.answers] == [a.text for a in alone.answers]


def test_a_diverging_adapter_stops_without_touching_the_others(tiny_model_dir):
    """A float16 adapter with an absurd learning rate leaves the packed row at its first non-finite
    loss; the adapters trained beside it end exactly as they end without it."""
    with_diverging, alone = [
        BatchedInnerLoop(loaded.model, loaded.tokenizer)
        for loaded in (load_model(str(tiny_model_dir), dtype="float16") for _ in range(2))
    ]
    absurd = plan(["The Eiffel Tower is in Paris.", "It was completed in 1889."], seed=5, lr=1e9, epochs=5)

    diverged, *others = with_diverging.train_and_answer([absurd, *PLANS[:2]], PROMPTS, GREEDY)
    expected = alone.train_and_answer(PLANS[:2], PROMPTS, GREEDY)

    assert "training diverged" in diverged.stats.stopped and diverged.stats.steps < 10
    assert [a.text for a in diverged.answers] == ["", ""]
    for got, want in zip(others, expected):
        assert got.stats.stopped == "" and got.stats.steps == want.stats.steps
        for name, tensor in want.adapter_state.items():
            torch.testing.assert_close(got.adapter_state[name], tensor, msg=name)
        assert [a.text for a in got.answers] == [a.text for a in want.answers]


def test_packed_batches_of_several_sequences_match_one_by_one(engines):
    """Batch size 2, prompt tokens masked out, uneven sequence counts: each adapter's packed stretch
    holds up to two sequences of different lengths, and still trains as it would alone."""
    sequential, batched = engines
    question = "Question: Where is it?\nAnswer:"
    plans = [
        TrainPlan(
            (
                TrainExample(" In Paris.", prompt=question),
                TrainExample(" Since 1889, by the river.", prompt=question),
                TrainExample(" Yes."),
            ),
            InnerLoopSettings(
                target_modules=("all-linear",),
                rank=4,
                alpha=8,
                lr=1e-2,
                epochs=2,
                batch_size=2,
                loss_on="completion",
                seed=5,
            ),
        ),
        plan(["Genghis Khan founded the Mongol Empire.", "The Shah fled."], seed=6, batch_size=2),
    ]

    one_by_one = sequential.train_and_answer(plans, PROMPTS, GREEDY)
    together = batched.train_and_answer(plans, PROMPTS, GREEDY)

    for alone, joint in zip(one_by_one, together):
        for name, tensor in as_sequential_names(alone.adapter_state).items():
            # A padded batch and a packed row sum in different orders: on an AVX-512/AMX CPU one element
            # of 256 drifts by 1.2e-5 after 4 AdamW steps at lr 1e-2 (within 1e-5 on AVX2-only CPUs).
            torch.testing.assert_close(joint.adapter_state[name], tensor, rtol=1e-4, atol=3e-5, msg=name)
        assert (joint.stats.steps, joint.stats.tokens) == (alone.stats.steps, alone.stats.tokens)
        assert joint.stats.last_loss == pytest.approx(alone.stats.last_loss, rel=1e-4)


def test_each_adapter_learns_only_its_own_plan(engines):
    """Adapters are independent: a plan's result does not depend on which plans train beside it."""
    _, batched = engines
    alone = batched.train_and_answer(PLANS[1:2], PROMPTS, GREEDY)[0]
    beside_others = batched.train_and_answer(PLANS, PROMPTS, GREEDY)[1]
    for name, tensor in alone.adapter_state.items():
        torch.testing.assert_close(beside_others.adapter_state[name], tensor, rtol=1e-4, atol=1e-6)


def test_base_model_is_restored_and_untouched(engines, tiny_model_dir):
    _, batched = engines
    before = {n: p.detach().clone() for n, p in batched.base_model.named_parameters()}
    batched.train_and_answer(PLANS, PROMPTS, GREEDY)

    after = dict(batched.base_model.named_parameters())
    assert after.keys() == before.keys(), "the stacked layers were removed again"
    assert all(torch.equal(after[n], before[n]) for n in before)
    assert all(p.requires_grad for p in after.values()), "requires_grad restored"
    untouched = load_model(str(tiny_model_dir))
    assert [g.text for g in batched.generate_with_base(PROMPTS, GREEDY)] == [
        g.text for g in InnerLoop(untouched.model, untouched.tokenizer).generate_with_base(PROMPTS, GREEDY)
    ]


def test_plans_with_different_lora_shapes_train_in_separate_groups(engines):
    sequential, batched = engines
    mixed = [PLANS[0], plan(["The Shah fled."], seed=3, rank=2, target_modules=("q_proj", "v_proj"))]

    results = batched.train_and_answer(mixed, PROMPTS, GREEDY)

    assert results[1].adapter_state["model.layers.0.self_attn.q_proj.lora_a"].shape[0] == 2
    assert not any("mlp" in name for name in results[1].adapter_state)
    expected = as_sequential_names(sequential.train_and_answer(mixed[1:], PROMPTS, GREEDY)[0].adapter_state)
    for name, tensor in expected.items():
        torch.testing.assert_close(results[1].adapter_state[name], tensor, rtol=1e-4, atol=1e-5)


def test_target_names_and_unsupported_settings(engines):
    _, batched = engines
    names = target_names(batched.base_model, ("all-linear",))
    assert "lm_head" not in names and any(n.endswith("mlp.down_proj") for n in names)
    with pytest.raises(ValueError, match="no linear layer"):
        target_names(batched.base_model, ("nope",))
    with pytest.raises(ValueError, match="dropout"):
        batched.train_and_answer([plan(["The Shah fled."], seed=0, dropout=0.1)], PROMPTS, GREEDY)


def test_eval_knowledge_gives_the_same_records_with_either_engine(tmp_path, tiny_model_dir):
    """Through the CLI: the k external self-edits of a passage train together and score the same."""
    import json

    from seal_lm.cli import main

    passages = [
        {
            "title": "Tower",
            "context": "The Eiffel Tower is in Paris.",
            "questions": [{"question": "Where?", "answer": "Paris"}],
        }
    ]
    external = [
        {**passages[0], "completions": ["The tower is tall and old.\nIt stands in Paris.", "Paris has a tall tower."]}
    ]
    (tmp_path / "data.json").write_text(json.dumps(passages))
    (tmp_path / "external.json").write_text(json.dumps(external))
    records = {}
    for engine in ("sequential", "batched"):
        out = tmp_path / engine
        assert (
            main(
                [
                    "eval",
                    "knowledge",
                    "--engine",
                    engine,
                    "--data",
                    str(tmp_path / "data.json"),
                    "--model",
                    str(tiny_model_dir),
                    "--conditions",
                    "base,passage,external",
                    "--external",
                    str(tmp_path / "external.json"),
                    "--k",
                    "2",
                    "--epochs",
                    "2",
                    "--target-modules",
                    "all-linear",
                    "--answer-max-tokens",
                    "6",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        records[engine] = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    for alone, joint in zip(records["sequential"], records["batched"], strict=True):
        assert joint["unit"] == alone["unit"]
        assert [g["raw_answer"] for g in joint["grades"]] == [g["raw_answer"] for g in alone["grades"]]
        if alone["train"]:
            assert joint["train"]["last_loss"] == pytest.approx(alone["train"]["last_loss"], rel=1e-4)


@pytest.mark.parametrize("engine", [InnerLoop, BatchedInnerLoop])
def test_bfloat16_autocast_trains_float32_adapters(engine, tiny_model_dir):
    """With ``compute_dtype=bfloat16`` the matmuls run in bf16, the adapters and base stay float32.

    (The tiny model's near-uniform logits are below bf16's resolution, so its loss is no signal here.)
    """
    loaded = load_model(str(tiny_model_dir))
    loop = engine(loaded.model, loaded.tokenizer, compute_dtype=torch.bfloat16)

    result = loop.train_and_answer(PLANS[:1], PROMPTS, GREEDY)[0]

    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in result.adapter_state.values())
    assert any(t.abs().sum() > 0 for n, t in result.adapter_state.items() if "lora_b" in n.lower())
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert len(result.answers) == len(PROMPTS)
