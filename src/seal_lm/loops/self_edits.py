"""A context's self-edits: ``k`` sampled in one seeded, batched generation; the plans they become, reseeded per sample.

The loops (evaluate, restem, continual) sample and seed here and parse with ``Domain.parse_self_edit``;
what an unusable self-edit becomes (a zero score, a recorded rejection, the context alone) stays each
loop's own choice.
"""

from __future__ import annotations

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
    """The self-edit prompt and ``k`` self-edits sampled for it in one batched generation (reproducible for a given ``k``).

    The seed is ``key``'s own (default: the context id; :meth:`GenerationSettings.seeded_for`), so contexts
    with similar prompts do not draw the same samples and a resumed run draws what the interrupted one
    would have. A style that writes nothing (no prompt) gives ``k`` empty self-edits.
    """
    prompt = domain.self_edit_prompt(context)
    if prompt is None:
        return None, [Generation("", 0, False)] * k
    settings = settings.seeded_for(domain.context_id(context) if key is None else key)
    return prompt, inner_loop.generate_with_base(
        [prompt] * k, replace(settings, batch_size=max(k, settings.batch_size))
    )


def reseeded(plan: TrainPlan, seed_offset: int) -> TrainPlan:
    """``plan`` with its inner-loop seed moved by ``seed_offset`` (a sample's index, or an inner-loop repeat)."""
    return replace(plan, settings=replace(plan.settings, seed=plan.settings.seed + seed_offset))
