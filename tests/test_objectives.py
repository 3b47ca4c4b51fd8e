"""Tests for seal_lm.adapt.objectives: context distillation and its sum with SFT in the inner loop.

The teacher is the frozen tiny model with the document in its prompt; the student is the same model
with a LoRA adapter and without the document.
"""

from __future__ import annotations

import pytest
import torch
from conftest import build_model

import seal_lm.adapt.objectives as objectives
from seal_lm.adapt.batched import BatchedInnerLoop
from seal_lm.adapt.lora import InnerLoop, InnerLoopSettings, TrainExample, TrainPlan
from seal_lm.adapt.objectives import Teacher, distillation_loss
from seal_lm.model.generation import GenerationSettings

GREEDY = GenerationSettings(max_new_tokens=4)
DOCUMENT = "The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.\n\n"
EXAMPLES = (
    TrainExample("Eiffel Tower\nThe tower was finished in 1889.", context=DOCUMENT),
    TrainExample("Eiffel Tower\nIt stands in Paris.", context=DOCUMENT),
)
SMALL = InnerLoopSettings(rank=4, alpha=8, lr=1e-2, epochs=4)


def plan(examples=EXAMPLES, **settings) -> TrainPlan:
    return TrainPlan(tuple(examples), InnerLoopSettings(**{**SMALL.__dict__, **settings}))


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def trained(tokenizer, training_plan: TrainPlan):
    """A fresh tiny model's inner loop after training ``training_plan``: (loop, result)."""
    loop = InnerLoop(build_model(len(tokenizer), seed=0), tokenizer)
    [result] = loop.train_and_answer([training_plan], ["Where is the Eiffel Tower?"], GREEDY)
    return loop, result


# --- the loss ---------------------------------------------------------------------------------------


def test_distillation_loss_is_zero_for_the_same_model_on_the_same_input(tiny_tokenizer):
    model = build_model(len(tiny_tokenizer))
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids(tiny_tokenizer, DOCUMENT)])).logits
    mask = torch.ones(logits.shape[:2], dtype=torch.bool)

    assert distillation_loss(logits, torch.log_softmax(logits, -1), mask).item() == 0.0
    other = build_model(len(tiny_tokenizer), seed=1)(input_ids=torch.tensor([ids(tiny_tokenizer, DOCUMENT)])).logits
    assert distillation_loss(logits, torch.log_softmax(other, -1), mask).item() > 0.01


def test_distillation_loss_averages_only_the_masked_positions():
    student = torch.randn(1, 3, 7)
    teacher = torch.log_softmax(torch.randn(1, 3, 7), -1)
    mask = torch.tensor([[True, False, True]])
    garbage = teacher.clone()
    garbage[0, 1] = torch.log_softmax(torch.randn(7) * 10, -1)  # a masked-out position changes nothing

    loss = distillation_loss(student, teacher, mask)

    assert loss == distillation_loss(student, garbage, mask)
    # forward KL, teacher to student: sum over the vocabulary of p_teacher * (log p_teacher - log p_student)
    forward_kl = (teacher.exp() * (teacher - torch.log_softmax(student, -1))).sum(-1)[0]
    assert loss.item() == pytest.approx((forward_kl[0] + forward_kl[2]).item() / 2, rel=1e-5)


def test_the_teacher_without_a_context_predicts_the_sequence_as_the_untouched_model_does(tiny_tokenizer):
    """Position j of the teacher's targets predicts token j+1 of the sequence, as the student's logits do."""
    model = InnerLoop(build_model(len(tiny_tokenizer)), tiny_tokenizer)
    model._fresh_adapter(SMALL)
    sequence = ids(tiny_tokenizer, "It stands in Paris.")
    teacher = Teacher(model.peft_model, [ids(tiny_tokenizer, DOCUMENT), []], [sequence, sequence], len(tiny_tokenizer))
    with torch.no_grad():
        student = model.peft_model(input_ids=torch.tensor([sequence])).logits[0, :-1]

    assert torch.allclose(teacher.log_probs(1), torch.log_softmax(student, -1), atol=1e-6)
    assert teacher.log_probs(0).shape == teacher.log_probs(1).shape
    assert not torch.allclose(
        teacher.log_probs(0), teacher.log_probs(1), atol=1e-3
    )  # the document changes its predictions


# --- training ---------------------------------------------------------------------------------------


def test_distillation_loss_decreases_when_training(tiny_tokenizer):
    _, result = trained(tiny_tokenizer, plan(objective="distill", epochs=8))

    assert result.stats.first_loss > 0  # the random tiny model's distributions are flat: small but real divergences
    assert result.stats.last_loss < 0.5 * result.stats.first_loss


def test_the_teacher_is_never_updated(tiny_tokenizer):
    """Base weights stay bit-identical, and so do the teacher's predictions (the model with the adapter disabled)."""
    model = build_model(len(tiny_tokenizer), seed=0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    document = torch.tensor([ids(tiny_tokenizer, DOCUMENT + "Eiffel Tower\nIt stands in Paris.")])
    with torch.no_grad():
        teacher_before = model(input_ids=document).logits
    loop = InnerLoop(model, tiny_tokenizer)

    [result] = loop.train_and_answer([plan(objective="distill")], ["Where?"], GREEDY)

    assert result.stats.last_loss < result.stats.first_loss
    assert any(p.abs().sum() > 0 for name, p in result.adapter_state.items() if "lora_B" in name)  # the student moved
    after = {name.replace(".base_layer", ""): p for name, p in model.named_parameters() if "lora_" not in name}
    assert [name for name in before if not torch.equal(before[name], after[name])] == []
    with torch.no_grad(), loop.peft_model.disable_adapter():
        assert torch.equal(loop.peft_model(input_ids=document).logits, teacher_before)


def test_sft_plus_distill_with_weight_zero_is_exactly_sft(tiny_tokenizer):
    _, sft = trained(tiny_tokenizer, plan(objective="sft"))
    _, mixed = trained(tiny_tokenizer, plan(objective="sft+distill", distill_weight=0.0))
    _, half = trained(tiny_tokenizer, plan(objective="sft+distill", distill_weight=0.5))

    assert sft.adapter_state.keys() == mixed.adapter_state.keys()
    assert all(torch.equal(sft.adapter_state[n], mixed.adapter_state[n]) for n in sft.adapter_state)
    assert (sft.stats.first_loss, sft.stats.last_loss) == (mixed.stats.first_loss, mixed.stats.last_loss)
    assert not all(torch.equal(sft.adapter_state[n], half.adapter_state[n]) for n in sft.adapter_state)


def test_sft_plus_distill_with_weight_one_is_exactly_distill(tiny_tokenizer):
    _, distill = trained(tiny_tokenizer, plan(objective="distill"))
    _, mixed = trained(tiny_tokenizer, plan(objective="sft+distill", distill_weight=1.0))

    assert all(torch.equal(distill.adapter_state[n], mixed.adapter_state[n]) for n in distill.adapter_state)


def test_cached_and_recomputed_teacher_train_the_same_adapter(tiny_tokenizer, monkeypatch):
    _, cached = trained(tiny_tokenizer, plan(objective="distill", batch_size=2))
    monkeypatch.setattr(objectives, "TEACHER_CACHE_BYTES", 0)
    calls = []
    original = Teacher.log_probs
    monkeypatch.setattr(Teacher, "log_probs", lambda self, i: calls.append(self.cache) or original(self, i))

    _, recomputed = trained(tiny_tokenizer, plan(objective="distill", batch_size=2))

    assert calls and all(cache is None for cache in calls)
    assert all(torch.equal(cached.adapter_state[n], recomputed.adapter_state[n]) for n in cached.adapter_state)


def test_the_document_is_read_by_the_teacher_and_never_trained_on(tiny_tokenizer):
    _, sft = trained(tiny_tokenizer, plan(objective="sft"))
    _, distill = trained(tiny_tokenizer, plan(objective="distill"))

    assert (distill.stats.tokens, distill.stats.sequence_tokens) == (sft.stats.tokens, sft.stats.sequence_tokens)


def test_distillation_without_any_document_is_refused(tiny_tokenizer):
    bare = tuple(TrainExample(e.completion) for e in EXAMPLES)
    with pytest.raises(ValueError, match="document in the teacher's prompt"):
        trained(tiny_tokenizer, plan(bare, objective="distill"))


@pytest.mark.parametrize("bad", [{"objective": "kl"}, {"distill_weight": 1.5}, {"distill_weight": -0.1}])
def test_invalid_objective_settings_raise_value_error(bad):
    with pytest.raises(ValueError, match="objective|distill_weight"):
        InnerLoopSettings(**bad)


def test_the_batched_engine_refuses_distillation(tiny_tokenizer):
    engine = BatchedInnerLoop(build_model(len(tiny_tokenizer)), tiny_tokenizer)
    with pytest.raises(ValueError, match="--engine sequential"):
        engine.train_and_answer([plan(objective="distill")], ["Where?"], GREEDY)
