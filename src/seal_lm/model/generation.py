"""Batched text generation with Hugging Face ``generate``.

Prompts are sorted by length and generated in batches with left padding; results come back in the
caller's order. Each result records how many tokens were generated and whether generation hit its
token budget (``truncated``), so callers can tell a finished answer from a cut-off one.

A batch of identical prompts (the k self-edits sampled for one context) is prefilled once: the
prompt's key/value cache is computed for one copy and repeated for the batch.

Sampling draws each prompt's tokens from that prompt's own seeded generator (:class:`SampleEachRow`),
never from PyTorch's global one. A prompt's sample depends on its seed, not on the other prompts of
its batch, on the batch size or on the order. The only exception is the floating-point noise of
batched arithmetic. So the self-edits of many contexts can be written in one batch and still be
each context's own.

With ``json_schema`` set, every completion is JSON matching that schema (:mod:`seal_lm.model.constrained`).
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from seal_lm.model.constrained import json_schema_processor

if TYPE_CHECKING:
    from transformers import DynamicCache


@dataclass(frozen=True)
class GenerationSettings:
    """How to generate: greedy when ``temperature`` is 0."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = field(default_factory=tuple)  # cut the text at the first of these
    batch_size: int = 8
    seed: int = 0
    json_schema: str = ""  # a JSON schema (as text) every completion must follow; empty: free text
    row_seeds: tuple[int, ...] = ()  # each prompt's own sampling seed, in the caller's order; empty: seed + its index

    def seeded_for(self, key: str) -> GenerationSettings:
        """These settings with a seed of ``key``'s own (e.g. a context id), so different keys draw different samples."""
        return replace(self, seed=seed_for(self.seed, key))

    def seed_of(self, row: int) -> int:
        """The sampling seed of the prompt at position ``row`` of a call."""
        return self.row_seeds[row] if self.row_seeds else self.seed + row


def seed_for(seed: int, key: str) -> int:
    """``key``'s own seed (e.g. a context id's) derived from ``seed``: different keys draw different numbers."""
    return seed + zlib.crc32(key.encode())


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int
    truncated: bool  # stopped at max_new_tokens, not at EOS or a stop string


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    settings: GenerationSettings,
    progress: str | None = None,
    keep_order: bool = False,
) -> list[Generation]:
    """Generate one completion per prompt.

    ``keep_order`` batches the prompts in the given order instead of by length, for callers whose
    batch layout matters, such as the batched inner loop's adapter-major rows; identical prompts are
    then not prefilled once, as their rows may run through different adapters.
    """
    from transformers import LogitsProcessorList  # imported on first use: the command line checks its input first

    if settings.row_seeds and len(settings.row_seeds) != len(prompts):
        raise ValueError(f"{len(settings.row_seeds)} row seeds for {len(prompts)} prompts")
    order = list(range(len(prompts)))
    if not keep_order:
        order.sort(key=lambda i: len(prompts[i]), reverse=True)
    results: dict[int, Generation] = {}
    device = next(model.parameters()).device
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        batches = [order[i : i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
        for batch in tqdm(batches, desc=progress, disable=progress is None, leave=False):
            texts = [prompts[i] for i in batch]
            encoded = tokenizer(texts, return_tensors="pt", padding=True).to(device)
            shared = (
                _prefilled_once(model, encoded["input_ids"])
                if not keep_order and len(texts) > 1 and len(set(texts)) == 1
                else None
            )
            processors = LogitsProcessorList()
            if settings.json_schema:  # before sampling: the draw is among the tokens the schema allows
                processors.append(json_schema_processor(tokenizer, model.config.vocab_size, settings.json_schema))
            if settings.temperature > 0:
                processors.append(
                    SampleEachRow(settings.temperature, settings.top_p, [settings.seed_of(i) for i in batch])
                )
            output = model.generate(
                **encoded,
                **({} if shared is None else {_cache_argument(model): shared}),
                max_new_tokens=settings.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                stop_strings=list(settings.stop) or None,
                tokenizer=tokenizer if settings.stop else None,
                do_sample=False,  # a sampler leaves one token possible; greedy takes it
                temperature=None,
                top_p=None,
                top_k=None,
                logits_processor=processors,
            )
            new_tokens = output[:, encoded["input_ids"].shape[1] :]
            for row, index in enumerate(batch):
                results[index] = _decode(tokenizer, new_tokens[row], settings)
    finally:
        tokenizer.padding_side = padding_side
    return [results[i] for i in range(len(prompts))]


class SampleEachRow:
    """Draws each row's next token (temperature, then nucleus) from the row's own generator and masks every other token.

    A logits processor (transformers' ``LogitsProcessor`` interface) for greedy ``generate``, which then takes the draw.

    ``seeds`` holds one seed per row of the batch. A row's draws depend on its seed and its own scores
    alone. Rows that have finished keep drawing too, so every row draws once per step.
    """

    def __init__(self, temperature: float, top_p: float, seeds: Sequence[int]):
        self.temperature, self.top_p = temperature, top_p
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            outside = sorted_probs.cumsum(dim=-1) - sorted_probs > self.top_p  # the most likely token always stays
            probs = probs.scatter(-1, order, sorted_probs.masked_fill(outside, 0.0))
        tokens = [torch.multinomial(row, 1, generator=g) for row, g in zip(probs.cpu(), self.generators, strict=True)]
        return torch.full_like(scores, float("-inf")).scatter(-1, torch.stack(tokens).to(scores.device), 0.0)


def _prefilled_once(model, input_ids: torch.Tensor) -> DynamicCache | None:
    """The key/value cache of one copy of identical prompts (all but the last token), repeated for every row."""
    from transformers import DynamicCache  # imported on first use: the command line checks its input first

    if input_ids.shape[1] < 2:
        return None
    cache = DynamicCache(config=model.config)
    model(input_ids=input_ids[:1, :-1], use_cache=True, **{_cache_argument(model): cache})
    cache.batch_repeat_interleave(len(input_ids))
    return cache


def _cache_argument(model) -> str:
    """The name this transformers version takes a KV cache by (``past_key_values`` became ``cache`` in 5.24)."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT model passes it on
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _decode(tokenizer, token_ids: torch.Tensor, settings: GenerationSettings) -> Generation:
    ids = token_ids.tolist()
    stop_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    length = next((i for i, t in enumerate(ids) if t in stop_ids), len(ids))
    text = tokenizer.decode(ids[:length], skip_special_tokens=True)
    cut = [text.find(s) for s in settings.stop if s in text]
    if cut:
        text = text[: min(cut)]
    hit_budget = length == len(ids) and len(ids) == settings.max_new_tokens and not cut
    if hit_budget:  # the budget may end inside a multi-byte character, whose first bytes decode as U+FFFD
        text = text.rstrip("\ufffd")
    return Generation(text=text, tokens=length, truncated=hit_budget)
