"""Streamed completions (``seal serve``, ``seal chat``): pieces, stop strings, whole characters, seeds, cancelling."""

from __future__ import annotations

import torch

from seal_lm.model.completion import _END, CompletionStream, CompletionWorker, Sampling


def feed(stream: CompletionStream, ids: list[int]) -> list[str]:
    """The pieces a stream yields when the worker hands it ``ids`` one token at a time."""
    for token in ids:
        stream._put([token])
    stream._put(_END)
    return list(stream)


def test_pieces_never_split_a_multibyte_character(tiny_tokenizer):
    ids = tiny_tokenizer("café ünïcödé ✓", add_special_tokens=False)["input_ids"]
    assert len(ids) > len("café ünïcödé ✓") / 2  # byte-level: several tokens per accented character

    pieces = feed(CompletionStream(tiny_tokenizer, Sampling(max_tokens=100), 0), ids)

    assert "".join(pieces) == "café ünïcödé ✓"
    assert not any("\ufffd" in piece for piece in pieces)


def test_a_stop_string_cuts_the_text_and_is_never_streamed(tiny_tokenizer):
    ids = tiny_tokenizer("The tower. Question: who?", add_special_tokens=False)["input_ids"]
    stream = CompletionStream(tiny_tokenizer, Sampling(max_tokens=100, stop=("Question:",)), 0)

    pieces = feed(stream, ids)

    assert "".join(pieces) == stream.result.text == "The tower. "
    assert stream.result.finish_reason == "stop" and stream.cancelled.is_set()


def test_finish_reason_and_token_counts(tiny_tokenizer):
    ids = tiny_tokenizer("The Eiffel Tower", add_special_tokens=False)["input_ids"]
    at_budget = CompletionStream(tiny_tokenizer, Sampling(max_tokens=len(ids)), 3)
    feed(at_budget, ids)
    ended = CompletionStream(tiny_tokenizer, Sampling(max_tokens=50), 3)
    feed(ended, ids + [tiny_tokenizer.eos_token_id])

    assert (at_budget.result.finish_reason, at_budget.result.completion_tokens) == ("length", len(ids))
    assert (ended.result.finish_reason, ended.result.completion_tokens, ended.result.text) == (
        "stop",
        len(ids),
        "The Eiffel Tower",
    )


def test_worker_streams_what_it_generates_and_seeds_repeat_samples(tiny_tokenizer):
    from conftest import build_model

    model = build_model(len(tiny_tokenizer)).eval()
    worker = CompletionWorker(threads=1)
    greedy = worker.submit(model, tiny_tokenizer, "The Eiffel", Sampling(max_tokens=12, temperature=0))
    pieces = list(greedy)

    def sample(seed: int) -> str:
        return (
            worker.submit(model, tiny_tokenizer, "The Eiffel", Sampling(max_tokens=12, temperature=1.0, seed=seed))
            .complete()
            .text
        )

    assert "".join(pieces) == greedy.result.text and greedy.result.completion_tokens <= 12
    torch.manual_seed(0)
    first = sample(7)
    torch.manual_seed(123)  # the global generator plays no part
    assert sample(7) == first
    assert len({sample(seed) for seed in range(5)}) > 1
