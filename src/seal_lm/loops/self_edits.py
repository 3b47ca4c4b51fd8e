"""A context's self-edits: ``k`` sampled in one seeded, batched generation; the plans they become, reseeded per sample.

Each self-edit has its own seed (the context's, plus the sample's index), so the self-edits of
several contexts can be sampled in one batch (:func:`sample_self_edits_of_many`) and still be what
each context would draw alone.

The loops (evaluate, restem, continual) sample and seed here and parse with ``Domain.parse_self_edit``;
what an unusable self-edit becomes (a zero score, a recorded rejection, the context alone) stays each
loop's own choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from seal_lm.adapt.lora import InnerLoopEngine, TrainPlan
from seal_lm.domains.base import Domain
from seal_lm.model.generation import Generation, GenerationSettings


def sample_self_edits(
    inner_loop: InnerLoopEngine,
    domain: Domain,
    context: Any,
    k: int,
    settings: GenerationSettings,
    key: str | None = None,
) -> tuple[str | None, list[Generation]]:
    """The self-edit prompt and ``k`` self-edits sampled for it in one batched generation.

    The seeds are ``key``'s own (default: the context id; :meth:`GenerationSettings.seeded_for`) plus
    the sample's index, so contexts with similar prompts do not draw the same samples and a resumed run
    draws what the interrupted one would have. A style that writes nothing (no prompt) gives ``k`` empty
    self-edits.
    """
    return sample_self_edits_of_many(inner_loop, domain, [context], k, settings, None if key is None else [key])[0]


def sample_self_edits_of_many(
    inner_loop: InnerLoopEngine,
    domain: Domain,
    contexts: Sequence[Any],
    k: int,
    settings: GenerationSettings,
    keys: Sequence[str] | None = None,
) -> list[tuple[str | None, list[Generation]]]:
    """:func:`sample_self_edits` for every context (``keys``: one per context), sampled in one batched generation.

    Each context draws from its own seeds, so it gets the same self-edits as alone, except where the
    floating-point noise of batched arithmetic tips a draw.
    """
    keys = [domain.context_id(context) for context in contexts] if keys is None else keys
    prompts = [domain.self_edit_prompt(context) for context in contexts]
    rows = [
        (prompt, settings.seeded_for(key).seed + sample) for prompt, key in zip(prompts, keys) for sample in range(k)
    ]
    rows = [(prompt, seed) for prompt, seed in rows if prompt is not None]
    batch = replace(settings, batch_size=max(k, settings.batch_size), row_seeds=tuple(seed for _, seed in rows))
    generations = iter(inner_loop.generate_with_base([prompt for prompt, _ in rows], batch) if rows else [])
    return [
        (prompt, [next(generations) for _ in range(k)] if prompt is not None else [Generation("", 0, False)] * k)
        for prompt in prompts
    ]


def reseeded(plan: TrainPlan, seed_offset: int) -> TrainPlan:
    """``plan`` with its inner-loop seed moved by ``seed_offset`` (a sample's index, or an inner-loop repeat)."""
    return replace(plan, settings=replace(plan.settings, seed=plan.settings.seed + seed_offset))
