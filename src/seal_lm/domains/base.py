"""The contract between the generic loops and a domain (knowledge passages, ARC tasks, ...).

A domain turns a *context* into prompts and training plans and grades probe answers. The loops
(evaluate, train, continual) only ever talk to a domain through this protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from seal_lm.adapt.lora import TrainPlan
from seal_lm.model.generation import GenerationSettings


class SelfEditRejected(ValueError):
    """A self-edit that cannot be used for training; the message says why (recorded, reward 0)."""


class Domain(Protocol):
    name: str
    answer_generation: GenerationSettings  # how probe prompts are answered
    # The evaluation conditions the domain offers, name → kind: "base" (no training), "in-context"
    # (no training, the context in the probe prompts), "context" (train on the context itself),
    # "context-repeat" (the context repeated to a self-edit's size), "self-edit" (the model's own),
    # "external" (read from a file). A domain offering "in-context" or "context-repeat" implements
    # ``in_context_prompts`` or ``repeat_plan``.
    conditions: dict[str, str]
    reference: str  # the condition every other is compared with in the results table
    metrics: tuple[str, ...]  # what a probe's grade holds besides ``correct``, for the table (e.g. exact_match)

    def context_id(self, context: Any) -> str:
        """A stable id for the context, used in run records."""

    def self_edit_prompt(self, context: Any) -> str | None:
        """The prompt the model answers with a self-edit, or None when the style needs no generation."""

    def parse_self_edit(self, context: Any, text: str, truncated: bool) -> TrainPlan:
        """The training plan a self-edit describes; raises :class:`SelfEditRejected` if unusable."""

    def context_plan(self, context: Any) -> TrainPlan:
        """The plan that trains on the context itself (the "passage only" baseline)."""

    def probe_prompts(self, context: Any) -> list[str]:
        """Prompts that test whether the adapted model learned the context (the context not in them)."""

    def in_context_prompts(self, context: Any) -> list[str]:
        """The probe prompts with the context in them (the "in-context" kind)."""

    def repeat_plan(self, context: Any, plan: TrainPlan) -> TrainPlan:
        """The context alone, repeated to about the size of ``plan`` (the "context-repeat" kind)."""

    def score(self, context: Any, answers: Sequence[str]) -> list[dict]:
        """One graded record per probe; each has a boolean ``correct`` and may add other metrics."""
