"""Batched text generation with Hugging Face ``generate``.

Prompts are sorted by length and generated in batches with left padding; results come back in the
caller's order. Each result records how many tokens were generated and whether generation hit its
token budget (``truncated``), so callers can tell a finished answer from a cut-off one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class GenerationSettings:
    """How to generate: greedy when ``temperature`` is 0."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = field(default_factory=tuple)  # cut the text at the first of these
    batch_size: int = 8
    seed: int = 0


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

    ``keep_order`` batches the prompts in the given order instead of by length (for callers whose
    batch layout matters, such as the batched inner loop's adapter-major rows).
    """
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
            encoded = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True).to(device)
            torch.manual_seed(settings.seed)
            sampling = {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
            output = model.generate(
                **encoded,
                max_new_tokens=settings.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                stop_strings=list(settings.stop) or None,
                tokenizer=tokenizer if settings.stop else None,
                **(sampling if settings.temperature > 0 else {"do_sample": False, "top_p": None, "top_k": None}),
            )
            new_tokens = output[:, encoded["input_ids"].shape[1] :]
            for row, index in enumerate(batch):
                results[index] = _decode(tokenizer, new_tokens[row], settings)
    finally:
        tokenizer.padding_side = padding_side
    return [results[i] for i in range(len(prompts))]


def _decode(tokenizer, token_ids: torch.Tensor, settings: GenerationSettings) -> Generation:
    ids = token_ids.tolist()
    stop_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    length = next((i for i, t in enumerate(ids) if t in stop_ids), len(ids))
    text = tokenizer.decode(ids[:length], skip_special_tokens=True)
    cut = [text.find(s) for s in settings.stop if s in text]
    if cut:
        text = text[: min(cut)]
    hit_budget = length == len(ids) and len(ids) == settings.max_new_tokens and not cut
    return Generation(text=text, tokens=length, truncated=hit_budget)
