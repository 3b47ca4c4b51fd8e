"""Tests for seal_lm.adapt.lora: the LoRA inner loop (fresh adapter per plan, train, answer).

Every test builds its own tiny random Llama (``build_model`` from conftest), because wrapping a
model in PEFT modifies it in place. Training runs on a handful of tokens, so each test takes well
under two seconds on CPU.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import build_model

from seal_lm.adapt.lora import InnerLoop, InnerLoopSettings, TrainExample, TrainPlan, training_attention
from seal_lm.model.generation import Generation, GenerationSettings

GREEDY = GenerationSettings(max_new_tokens=8)
PROBES = ["Where is the Eiffel Tower?", "Question: Who built it? Answer:", "Topic: Water"]
SMALL = InnerLoopSettings(rank=4, alpha=8, lr=1e-2, epochs=3)

FACT_A = TrainExample("The Eiffel Tower is in Paris.")
FACT_B = TrainExample("Genghis Khan founded the Mongol Empire.")
FACT_C = TrainExample(" 100 degrees", prompt="At what temperature does water boil?")


@pytest.fixture
def model(tiny_tokenizer):
    return build_model(len(tiny_tokenizer), seed=0)


@pytest.fixture
def loop(model, tiny_tokenizer):
    return InnerLoop(model, tiny_tokenizer)


def plan(*examples: TrainExample, **settings) -> TrainPlan:
    return TrainPlan(tuple(examples), InnerLoopSettings(**{**SMALL.__dict__, **settings}))


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def base_loss(tokenizer, examples, loss_on: str = "all") -> float:
    """Mean token loss of an untouched copy of the base model on ``examples`` (what a zero-init adapter sees)."""
    reference = build_model(len(tokenizer), seed=0)
    total, count = 0.0, 0
    for example in examples:
        prompt, completion = ids(tokenizer, example.prompt), ids(tokenizer, example.completion)
        labels = ([-100] * len(prompt) if loss_on == "completion" else prompt) + completion
        with torch.no_grad():
            loss = reference(input_ids=torch.tensor([prompt + completion]), labels=torch.tensor([labels])).loss
        n = sum(label != -100 for label in labels[1:])
        total, count = total + loss.item() * n, count + n
    return total / count


# --- the base model is never modified -------------------------------------------------------------


def test_training_changes_the_adapter_and_leaves_base_weights_bit_identical(loop, model, tiny_tokenizer):
    """PEFT renames wrapped layers (``q_proj.weight`` -> ``q_proj.base_layer.weight``); map names back."""
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    [result] = loop.train_and_answer([plan(FACT_A, FACT_B)], PROBES, GREEDY)

    after = {name.replace(".base_layer", ""): p for name, p in model.named_parameters() if "lora_" not in name}
    assert after.keys() == before.keys()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert changed == []

    # 2 layers x (q_proj, v_proj) x (lora_A, lora_B)
    assert len(result.adapter_state) == 8
    for name, tensor in result.adapter_state.items():
        assert "candidate" in name
        if "lora_A" in name:
            assert tensor.shape[0] == 4  # rank
        if "lora_B" in name:
            assert tensor.shape[1] == 4
            assert tensor.abs().sum() > 0, f"{name} is still zero after training"


def test_adapter_starts_as_a_no_op(loop, tiny_tokenizer):
    """lora_B starts at zero, so the first step's loss is exactly the base model's loss."""
    [result] = loop.train_and_answer([plan(FACT_A)], [], GREEDY)
    assert result.stats.first_loss == pytest.approx(base_loss(tiny_tokenizer, [FACT_A]), abs=1e-5)


def test_generate_with_base_matches_untouched_model_before_and_after_training(loop, tiny_tokenizer):
    untouched = InnerLoop(build_model(len(tiny_tokenizer), seed=0), tiny_tokenizer)
    expected = untouched.generate_with_base(PROBES, GREEDY)

    assert loop.generate_with_base(PROBES, GREEDY) == expected  # no adapter yet
    [result] = loop.train_and_answer([plan(FACT_A, epochs=10, target_modules=("all-linear",))], PROBES, GREEDY)
    assert result.answers != expected  # the adapter is active while answering ...
    assert loop.generate_with_base(PROBES, GREEDY) == expected  # ... and disabled here
    # and disabling it for base generation does not remove it
    [again] = loop.train_and_answer([plan(FACT_A, epochs=10, target_modules=("all-linear",))], PROBES, GREEDY)
    assert again.answers == result.answers


# --- each plan gets a fresh, seeded adapter -------------------------------------------------------


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_each_plan_starts_from_a_fresh_adapter(loop, tiny_tokenizer):
    """Training B after A in one call gives exactly what training B alone on a fresh model gives."""
    plan_a, plan_b = plan(FACT_A, seed=1), plan(FACT_B, seed=2)
    _, after_a = loop.train_and_answer([plan_a, plan_b], PROBES, GREEDY)

    alone = InnerLoop(build_model(len(tiny_tokenizer), seed=0), tiny_tokenizer)
    [only_b] = alone.train_and_answer([plan_b], PROBES, GREEDY)

    assert_same_state(after_a.adapter_state, only_b.adapter_state)
    assert after_a.answers == only_b.answers
    assert (after_a.stats.first_loss, after_a.stats.last_loss) == (only_b.stats.first_loss, only_b.stats.last_loss)


def test_no_leakage_when_target_modules_change_between_plans(loop, tiny_tokenizer):
    """An all-linear plan followed by a q/v plan: the second adapter only has q/v weights, as if alone."""
    wide, narrow = plan(FACT_A, target_modules=("all-linear",)), plan(FACT_B)
    first, second = loop.train_and_answer([wide, narrow], PROBES, GREEDY)

    def modules(state):
        return {name.split(".")[-4] for name in state}  # ...q_proj.lora_A.candidate.weight

    assert modules(first.adapter_state) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert modules(second.adapter_state) == {"q_proj", "v_proj"}

    [alone] = InnerLoop(build_model(len(tiny_tokenizer), seed=0), tiny_tokenizer).train_and_answer(
        [narrow], PROBES, GREEDY
    )
    assert_same_state(second.adapter_state, alone.adapter_state)
    assert second.answers == alone.answers


def test_same_seed_same_adapter_different_seed_different_adapter(loop):
    same_1, same_2, other = loop.train_and_answer(
        [plan(FACT_A, FACT_B, seed=7), plan(FACT_A, FACT_B, seed=7), plan(FACT_A, FACT_B, seed=8)], PROBES, GREEDY
    )
    assert_same_state(same_1.adapter_state, same_2.adapter_state)
    assert same_1.answers == same_2.answers
    assert other.adapter_state.keys() == same_1.adapter_state.keys()
    assert any(not torch.equal(same_1.adapter_state[n], other.adapter_state[n]) for n in same_1.adapter_state)


# --- training -------------------------------------------------------------------------------------


def test_loss_decreases_when_memorising_one_sequence(loop):
    [result] = loop.train_and_answer([plan(FACT_A, epochs=30, rank=8, alpha=16)], [], GREEDY)
    assert result.stats.steps == 30
    assert result.stats.last_loss < result.stats.first_loss - 0.1


def test_trained_adapter_answers_with_the_memorised_completion(loop):
    """With every linear layer adapted, 30 steps teach the tiny model a completion; answers use the adapter."""
    prompt = "Where is the Eiffel Tower?"
    memorise = plan(
        TrainExample(" Paris in 1889.", prompt=prompt), epochs=30, rank=8, alpha=16, target_modules=("all-linear",)
    )
    [result] = loop.train_and_answer([memorise], [prompt], GREEDY)
    assert result.answers[0].text.startswith(" Paris in 1889.")
    assert not loop.generate_with_base([prompt], GREEDY)[0].text.startswith(" Paris")


def test_steps_and_token_counts(loop, model, tiny_tokenizer):
    """steps == ceil(n / batch_size) * epochs optimizer steps (counted via forward passes);
    with loss_on='all' the loss covers every token but the first of each sequence."""
    examples = [FACT_A, FACT_B, FACT_C, TrainExample("Question: Who built it?"), TrainExample("Paris")]
    forwards = []
    model.model.embed_tokens.register_forward_hook(lambda *args: forwards.append(1))

    [result] = loop.train_and_answer([plan(*examples, batch_size=2, epochs=3)], [], GREEDY)

    lengths = [len(ids(tiny_tokenizer, e.prompt)) + len(ids(tiny_tokenizer, e.completion)) for e in examples]
    assert result.stats.steps == math.ceil(5 / 2) * 3 == 9
    assert len(forwards) == 9
    assert result.stats.sequence_tokens == sum(lengths)
    assert result.stats.tokens == sum(n - 1 for n in lengths) * 3
    assert result.stats.seconds > 0


def test_loss_on_completion_ignores_prompt_tokens(loop, tiny_tokenizer):
    """Only completion tokens are learned: with a prompt, every completion token is counted (the first
    one is predicted from the prompt's last token); without a prompt the first token has nothing to
    be predicted from, so it is not counted."""
    with_prompt = TrainExample(" 100 degrees Celsius", prompt="At what temperature does water boil?")
    no_prompt = TrainExample("Paris is in France.")
    completion_tokens = len(ids(tiny_tokenizer, with_prompt.completion))
    bare_tokens = len(ids(tiny_tokenizer, no_prompt.completion))

    [only_completion, everything, bare] = loop.train_and_answer(
        [
            plan(with_prompt, loss_on="completion", epochs=2),
            plan(with_prompt, epochs=2),
            plan(no_prompt, loss_on="completion", epochs=2),
        ],
        [],
        GREEDY,
    )

    assert only_completion.stats.tokens == completion_tokens * 2
    assert everything.stats.tokens == (len(ids(tiny_tokenizer, with_prompt.prompt)) + completion_tokens - 1) * 2
    assert bare.stats.tokens == (bare_tokens - 1) * 2
    assert only_completion.stats.sequence_tokens == everything.stats.sequence_tokens
    # the loss itself is taken on the completion only
    assert only_completion.stats.first_loss == pytest.approx(
        base_loss(tiny_tokenizer, [with_prompt], "completion"), abs=1e-5
    )
    assert everything.stats.first_loss == pytest.approx(base_loss(tiny_tokenizer, [with_prompt], "all"), abs=1e-5)
    assert only_completion.stats.first_loss != pytest.approx(everything.stats.first_loss, abs=1e-3)


def test_batches_of_different_lengths_are_padded_without_changing_the_loss(loop, tiny_tokenizer):
    """One padded batch of three sequences: the first loss is the token-weighted mean of the
    per-sequence losses, so padding adds nothing to it."""
    examples = [TrainExample("Paris"), FACT_A, FACT_C]
    assert len({len(ids(tiny_tokenizer, e.prompt + e.completion)) for e in examples}) == 3

    [one_batch, two_batches] = loop.train_and_answer(
        [plan(*examples, batch_size=3, loss_on="completion"), plan(*examples, batch_size=2)], [], GREEDY
    )

    assert one_batch.stats.first_loss == pytest.approx(base_loss(tiny_tokenizer, examples, "completion"), abs=1e-5)
    assert one_batch.stats.steps == 3 and two_batches.stats.steps == 6
    assert math.isfinite(two_batches.stats.last_loss)


def test_max_seq_len_truncates_sequences(loop, tiny_tokenizer):
    long = TrainExample("Read the passage below and list 10 short facts that it states or implies.")
    assert len(ids(tiny_tokenizer, long.completion)) > 5
    [result] = loop.train_and_answer([plan(long, max_seq_len=5, epochs=1)], [], GREEDY)
    assert result.stats.sequence_tokens == 5
    assert result.stats.tokens == 4


def test_a_diverging_adapter_stops_at_its_first_non_finite_loss_and_answers_nothing(tiny_tokenizer):
    """In float16 an absurd learning rate overflows within a few steps: training stops there and says
    why; the next plan, on a fresh adapter, trains all its steps and answers."""
    loop = InnerLoop(build_model(len(tiny_tokenizer), seed=0).half(), tiny_tokenizer)

    diverged, healthy = loop.train_and_answer(
        [plan(FACT_A, FACT_B, lr=1e9, epochs=5), plan(FACT_A, FACT_B)], PROBES, GREEDY
    )

    assert "training diverged" in diverged.stats.stopped and "learning rate 1e+09" in diverged.stats.stopped
    assert 0 < diverged.stats.steps < 10
    assert math.isfinite(diverged.stats.first_loss) and math.isfinite(diverged.stats.last_loss)  # of the steps taken
    assert f"at step {diverged.stats.steps + 1} of 10" in diverged.stats.stopped
    assert [answer.text for answer in diverged.answers] == [""] * len(PROBES)
    assert healthy.stats.stopped == "" and healthy.stats.steps == 6
    assert math.isfinite(healthy.stats.last_loss)
    assert any(answer.tokens for answer in healthy.answers)


# --- answers and validation -----------------------------------------------------------------------


def test_answers_one_generation_per_prompt_per_plan(loop):
    results = loop.train_and_answer([plan(FACT_A), plan(FACT_B, seed=3)], PROBES, GREEDY)
    assert len(results) == 2
    for result in results:
        assert len(result.answers) == len(PROBES)
        assert all(isinstance(answer, Generation) for answer in result.answers)
        assert all(answer.tokens <= GREEDY.max_new_tokens for answer in result.answers)


def test_each_result_is_handed_over_before_the_next_adapter_trains(loop, monkeypatch):
    trained = []
    original = loop.train_adapter
    monkeypatch.setattr(loop, "train_adapter", lambda p: trained.append(p) or original(p))
    plans = [plan(FACT_A), plan(FACT_B, seed=3)]

    results = loop.train_and_answer_each(plans, PROBES, GREEDY)
    first = next(results)
    assert trained == plans[:1]
    second = next(results)
    assert trained == plans

    expected = InnerLoop(build_model(len(loop.tokenizer), seed=0), loop.tokenizer).train_and_answer(
        plans, PROBES, GREEDY
    )
    assert [[a.text for a in r.answers] for r in (first, second)] == [[a.text for a in r.answers] for r in expected]


def test_no_plans_gives_no_results(loop):
    assert loop.train_and_answer([], PROBES, GREEDY) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"loss_on": "x"},
        {"rank": 0},
        {"lr": 0},
        {"lr": -1e-3},
        {"epochs": 0},
        {"batch_size": 0},
        {"alpha": 0},
        {"max_seq_len": 0},
    ],
)
def test_invalid_settings_raise_value_error(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        InnerLoopSettings(**bad)


def test_plan_without_examples_raises_value_error(loop):
    with pytest.raises(ValueError, match="at least one example"):
        loop.train_and_answer([TrainPlan(examples=(), settings=SMALL)], PROBES, GREEDY)


# --- how steps run: compiled, and the attention kernel --------------------------------------------
def test_a_compiled_step_trains_the_same_adapter_as_an_eager_one_and_is_compiled_once(tiny_tokenizer, monkeypatch):
    """``compile=True`` changes how a step runs, not what it learns: the same losses and adapter weights
    (within float32 reordering), for plans of other lengths and seeds, through one compiled graph."""
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)  # a fresh adapter must not recompile
    eager, compiled = (
        InnerLoop(build_model(len(tiny_tokenizer), seed=0), tiny_tokenizer, compile=c) for c in (False, True)
    )
    plans = [plan(FACT_A, FACT_B, seed=1), plan(FACT_C, FACT_A, seed=2, loss_on="completion")]
    wrappers = []
    for each in plans:
        expected, got = eager.train_adapter(each), compiled.train_adapter(each)
        assert got.steps == expected.steps and got.tokens == expected.tokens
        assert got.last_loss == pytest.approx(expected.last_loss, rel=1e-4)
        for name, tensor in eager.adapter_state().items():
            torch.testing.assert_close(compiled.adapter_state()[name], tensor, rtol=1e-4, atol=1e-5)
        wrappers.append(compiled._training_forward(compiled.peft_model))
        compiled.generate_with_base(PROBES, GREEDY)  # as between an evaluation's units
    assert wrappers[0] is wrappers[1]  # a fresh adapter reuses the compiled model
    assert isinstance(wrappers[0], torch._dynamo.eval_frame.OptimizedModule)


@pytest.mark.parametrize("dtype, flash_allowed", [(torch.float32, True), (torch.bfloat16, False)])
def test_training_steps_of_half_precision_weights_on_a_cpu_use_the_math_attention_kernel(
    tiny_tokenizer, dtype, flash_allowed
):
    model = build_model(len(tiny_tokenizer), seed=0).to(dtype)
    with training_attention(model):
        assert torch.backends.cuda.flash_sdp_enabled() is flash_allowed
    assert torch.backends.cuda.flash_sdp_enabled()  # restored after the steps
