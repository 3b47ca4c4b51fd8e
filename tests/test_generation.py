"""Tests for seal_lm.model.generation.generate: ordering, stop strings, truncation, sampling.

The tiny random Llama from conftest produces gibberish, but deterministic gibberish: greedy decoding
in float32 gives the same tokens for a prompt whether it is generated alone or left-padded in a
batch, so batched results can be compared exactly with one-by-one results.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
import torch
from conftest import build_model

from seal_lm.model.generation import Generation, GenerationSettings, SampleEachRow, generate

PROMPTS = [
    "Hi",
    "The Eiffel Tower is in Paris. It was completed in",
    "Question: Who built it?",
    "Topic: Water",
    "Genghis Khan founded the Mongol Empire. The Shah fled",
    "a",
    "Read the passage below and list",
]


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    return build_model(len(tiny_tokenizer), seed=0).eval()


def test_batched_results_come_back_in_the_callers_order(model, tiny_tokenizer):
    """Prompts are sorted by length internally and padded on the left in batches of 3; each result
    must still equal that prompt's result when generated alone."""
    settings = GenerationSettings(max_new_tokens=10, batch_size=3)
    batched = generate(model, tiny_tokenizer, PROMPTS, settings)
    alone = [generate(model, tiny_tokenizer, [prompt], settings)[0] for prompt in PROMPTS]

    assert len({g.text for g in alone}) == len(PROMPTS)  # distinct, so a permutation would show
    assert batched == alone


def test_empty_prompt_list(model, tiny_tokenizer):
    assert generate(model, tiny_tokenizer, [], GenerationSettings()) == []


def test_max_new_tokens_hit_means_truncated(model, tiny_tokenizer):
    [result] = generate(model, tiny_tokenizer, ["Hi"], GenerationSettings(max_new_tokens=6))
    assert isinstance(result, Generation)
    assert result.tokens == 6
    assert result.truncated is True


def test_a_character_cut_by_the_token_budget_is_dropped_not_shown_as_a_replacement_character(tiny_tokenizer):
    """The model is made to write "Voilà, café" (a hook on its output layer forces each next token); the
    byte-level tokenizer writes "é" as two byte tokens, so a budget one token short cuts it in half."""
    script = tiny_tokenizer("Voilà, café", add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.decode(script[:-1]) == "Voilà, caf\ufffd"  # the first byte of "é" alone
    model = build_model(len(tiny_tokenizer), seed=0).eval()
    steps = []

    def next_token_from_script(module, inputs, logits):
        forced = torch.full_like(logits, -1e4)
        forced[:, -1, script[len(steps)]] = 0.0
        steps.append(1)
        return forced

    model.lm_head.register_forward_hook(next_token_from_script)
    [cut] = generate(model, tiny_tokenizer, ["Hi"], GenerationSettings(max_new_tokens=len(script) - 1))
    steps.clear()
    [whole] = generate(model, tiny_tokenizer, ["Hi"], GenerationSettings(max_new_tokens=len(script)))

    assert (cut.text, cut.tokens, cut.truncated) == ("Voilà, caf", len(script) - 1, True)
    assert whole.text == "Voilà, café"


def _stop_string(text: str) -> re.Match:
    """The first run of ASCII letters in ``text`` that does not start it (a stop string that will match)."""
    match = next((m for m in re.finditer(r"[A-Za-z]{2,}", text) if m.start() > 0), None)
    assert match is not None, f"no usable stop string in {text!r}"
    return match


def test_stop_string_cuts_the_text_and_is_not_truncation(model, tiny_tokenizer):
    full = generate(model, tiny_tokenizer, ["Hi"], GenerationSettings(max_new_tokens=12))[0]
    match = _stop_string(full.text)

    [stopped] = generate(model, tiny_tokenizer, ["Hi"], GenerationSettings(max_new_tokens=12, stop=(match.group(),)))
    assert stopped.text == full.text[: match.start()]
    assert stopped.tokens < 12  # generation stopped early, at the stop string
    assert stopped.truncated is False

    # a stop string completed by the very last allowed token still counts as a stop, not truncation
    [at_budget] = generate(
        model, tiny_tokenizer, ["Hi"], GenerationSettings(max_new_tokens=stopped.tokens, stop=(match.group(),))
    )
    assert at_budget.text == stopped.text
    assert at_budget.tokens == stopped.tokens
    assert at_budget.truncated is False


def test_stop_strings_in_a_batch_only_cut_the_rows_that_contain_them(model, tiny_tokenizer):
    settings = GenerationSettings(max_new_tokens=12, batch_size=4)
    full = generate(model, tiny_tokenizer, PROMPTS, settings)
    match = _stop_string(full[0].text)
    assert all(match.group() not in g.text for g in full[1:]), "pick prompts whose outputs lack the stop string"

    stopped = generate(
        model, tiny_tokenizer, PROMPTS, GenerationSettings(max_new_tokens=12, batch_size=4, stop=(match.group(),))
    )
    assert stopped[0].text == full[0].text[: match.start()]
    assert stopped[0].truncated is False
    assert stopped[1:] == full[1:]


def test_eos_ends_generation_without_truncation(tiny_tokenizer):
    """Swap the lm_head rows of the greedy first token and EOS so that the model's first choice is EOS."""
    eos_model = build_model(len(tiny_tokenizer), seed=0).eval()
    settings = GenerationSettings(max_new_tokens=6, batch_size=2)
    before = generate(eos_model, tiny_tokenizer, ["Hi", "Topic: Water"], settings)
    with torch.no_grad():
        first = eos_model(**tiny_tokenizer(["Hi"], return_tensors="pt")).logits[0, -1].argmax().item()
        eos = tiny_tokenizer.eos_token_id
        head = eos_model.lm_head.weight
        head[[first, eos]] = head[[eos, first]]

    after = generate(eos_model, tiny_tokenizer, ["Hi", "Topic: Water"], settings)
    assert after[0] == Generation(text="", tokens=0, truncated=False)
    assert before[0].truncated is True
    # the other row of the same batch keeps going (unless it also hit EOS, which would end it early)
    assert after[1].tokens <= 6 and after[1].truncated == (after[1].tokens == 6)


def test_sampling_is_reproducible_with_the_same_seed(model, tiny_tokenizer):
    settings = GenerationSettings(max_new_tokens=12, temperature=1.0, seed=5, batch_size=2)
    first = generate(model, tiny_tokenizer, PROMPTS[:3], settings)
    second = generate(model, tiny_tokenizer, PROMPTS[:3], settings)
    other_seed = generate(
        model, tiny_tokenizer, PROMPTS[:3], GenerationSettings(max_new_tokens=12, temperature=1.0, seed=6, batch_size=2)
    )
    greedy = generate(model, tiny_tokenizer, PROMPTS[:3], GenerationSettings(max_new_tokens=12, batch_size=2))
    assert first == second
    assert first != other_seed
    assert first != greedy  # temperature > 0 really samples


def test_batches_of_one_call_do_not_repeat_each_others_samples(model, tiny_tokenizer):
    """The same prompt in two batches of one call must not draw the same random numbers (the samples
    of different contexts generated together would otherwise be copies of each other)."""
    settings = GenerationSettings(max_new_tokens=12, temperature=1.0, seed=5, batch_size=1)
    first, second = generate(model, tiny_tokenizer, [PROMPTS[0], PROMPTS[0]], settings)
    assert first.text != second.text


def test_a_prompts_sample_depends_on_its_own_seed_not_on_its_batch(model, tiny_tokenizer):
    """With ``row_seeds``, prompts of several contexts generated together draw what each draws alone."""
    settings = GenerationSettings(max_new_tokens=12, temperature=1.0, top_p=0.95)
    prompts, seeds = PROMPTS[:4], (11, 12, 13, 11)
    together = generate(model, tiny_tokenizer, prompts, replace(settings, row_seeds=seeds, batch_size=4))
    alone = [
        generate(model, tiny_tokenizer, [prompt], replace(settings, row_seeds=(seed,)))[0]
        for prompt, seed in zip(prompts, seeds)
    ]
    assert together == alone
    reordered = generate(model, tiny_tokenizer, prompts[::-1], replace(settings, row_seeds=seeds[::-1], batch_size=2))
    assert reordered == together[::-1]
    assert len({g.text for g in together}) == 4  # they really sample, each its own draw
    with pytest.raises(ValueError, match="3 row seeds for 4 prompts"):
        generate(model, tiny_tokenizer, prompts, replace(settings, row_seeds=seeds[:3]))


def test_nucleus_sampling_keeps_only_the_top_tokens():
    scores = torch.tensor([[4.0, 3.0, 0.0, -1.0]])
    sampler = SampleEachRow(temperature=1.0, top_p=0.5, seeds=[0])
    chosen = {int(sampler(None, scores).argmax()) for _ in range(50)}
    assert chosen == {0}  # token 0 alone holds over half of the mass
    wide = SampleEachRow(temperature=1.0, top_p=0.99, seeds=[0])
    assert {int(wide(None, scores).argmax()) for _ in range(200)} >= {0, 1}


def test_each_row_draws_from_its_own_generator():
    scores = torch.zeros(3, 50)  # uniform: every token as likely
    draws = SampleEachRow(temperature=1.0, top_p=1.0, seeds=[4, 5, 4])
    tokens = torch.stack([draws(None, scores).argmax(-1) for _ in range(20)])
    assert torch.equal(tokens[:, 0], tokens[:, 2])  # the same seed draws the same tokens, whatever row it is in
    assert not torch.equal(tokens[:, 0], tokens[:, 1])
    torch.manual_seed(0)
    again = SampleEachRow(temperature=1.0, top_p=1.0, seeds=[4])
    assert torch.equal(torch.stack([again(None, scores[:1]).argmax(-1) for _ in range(20)])[:, 0], tokens[:, 0])


def test_temperature_zero_is_deterministic_and_ignores_the_seed(model, tiny_tokenizer):
    results = [
        generate(model, tiny_tokenizer, PROMPTS, GenerationSettings(max_new_tokens=8, temperature=0.0, seed=seed))
        for seed in (0, 0, 1, 2)
    ]
    assert all(r == results[0] for r in results)


def test_padding_side_is_restored(model, tiny_tokenizer):
    original = tiny_tokenizer.padding_side
    try:
        tiny_tokenizer.padding_side = "right"
        generate(model, tiny_tokenizer, PROMPTS[:3], GenerationSettings(max_new_tokens=2))
        assert tiny_tokenizer.padding_side == "right"
    finally:
        tiny_tokenizer.padding_side = original


def test_padding_side_is_restored_when_generation_fails(tiny_tokenizer):
    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)

        def generate(self, **kwargs):
            raise RuntimeError("boom")

    original = tiny_tokenizer.padding_side
    try:
        tiny_tokenizer.padding_side = "right"
        with pytest.raises(RuntimeError, match="boom"):
            generate(Broken(), tiny_tokenizer, ["Hi"], GenerationSettings())
        assert tiny_tokenizer.padding_side == "right"
    finally:
        tiny_tokenizer.padding_side = original


def test_identical_prompts_are_prefilled_once_with_the_same_results(model, tiny_tokenizer):
    prompt = PROMPTS[1]
    forward_rows = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kwargs: forward_rows.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    for settings in (
        GenerationSettings(max_new_tokens=10, temperature=1.0, seed=3),
        GenerationSettings(max_new_tokens=10),
    ):
        forward_rows.clear()
        shared = generate(model, tiny_tokenizer, [prompt] * 4, settings)
        prompt_length = len(tiny_tokenizer(prompt)["input_ids"])
        assert forward_rows[0] == (1, prompt_length - 1)  # the prompt, once
        assert all(rows[1] == 1 for rows in forward_rows[1:])  # then one new token per row and step
        forward_rows.clear()
        separate = generate(model, tiny_tokenizer, [prompt] * 4, settings, keep_order=True)  # keep_order: no sharing
        assert forward_rows[0] == (4, prompt_length)
        assert shared == separate
    hook.remove()
    assert (
        len(
            {
                g.text
                for g in generate(
                    model, tiny_tokenizer, [prompt] * 4, GenerationSettings(max_new_tokens=10, temperature=1.0)
                )
            }
        )
        > 1
    )


def test_a_json_schema_makes_even_a_random_model_write_valid_json(model, tiny_tokenizer):
    schema = {
        "type": "object",
        "properties": {"flag": {"type": "boolean"}, "mode": {"enum": ["fast", "slow"]}},
        "required": ["flag", "mode"],
        "additionalProperties": False,
    }
    settings = GenerationSettings(max_new_tokens=40, temperature=1.0, seed=3, json_schema=json.dumps(schema))
    constrained = generate(model, tiny_tokenizer, ["Write JSON:"] * 4, settings)
    free = generate(model, tiny_tokenizer, ["Write JSON:"] * 4, replace(settings, json_schema=""))

    for generation in constrained:
        value = json.loads(generation.text)
        assert set(value) == {"flag", "mode"} and isinstance(value["flag"], bool) and value["mode"] in ("fast", "slow")
        assert not generation.truncated
    assert not any(_parses(g.text) for g in free), "the random model on its own writes no JSON"


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True
