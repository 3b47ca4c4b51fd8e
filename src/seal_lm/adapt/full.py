"""Full fine-tuning: train every weight of the model on a plan, answer the probes, then put the weights back.

The paper's v2 trains all weights, not a LoRA adapter, in the continued-pretraining setting.
:class:`FullFineTune` is an inner-loop engine with :class:`~seal_lm.adapt.lora.InnerLoop`'s interface
that trains the model itself, every parameter, with the LoRA engine's own step
(:func:`~seal_lm.adapt.lora.train_on_plan`: the same AdamW, schedule, clipping and epochs). Once a
plan's probes are answered, the base weights are copied back, bit for bit, from a copy kept in CPU
memory, so every plan starts from the untouched model.

Memory: the weights, their gradients and AdamW's two moments (about 4x the float32 weights) on the
model's device while a plan trains, and the base copy (1x) in CPU memory throughout.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from seal_lm.adapt.lora import (
    CandidateResult,
    TrainPlan,
    TrainStats,
    answers_after,
    mixed_precision,
    train_on_plan,
    training_attention,
)
from seal_lm.model.generation import Generation, GenerationSettings, generate


class FullFineTune:
    """Trains all weights of one model per plan, answers with them, and restores the base weights after each."""

    def __init__(
        self, model: torch.nn.Module, tokenizer, progress: bool = False, compute_dtype: torch.dtype | None = None
    ):
        self.model, self.tokenizer = model, tokenizer
        self.progress = progress  # a progress bar over training steps
        self.compute_dtype = compute_dtype  # autocast forward passes (e.g. bfloat16); weights stay as loaded
        # tied weights (e.g. input and output embeddings) are one parameter, so they are kept and restored once
        self.base_weights = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()}

    def generate_with_base(self, prompts: Sequence[str], generation: GenerationSettings) -> list[Generation]:
        """Completions from the base weights (restored after every plan)."""
        with mixed_precision(self.model, self.compute_dtype):
            return generate(self.model, self.tokenizer, prompts, generation)

    def train_and_answer_each(
        self, plans: Sequence[TrainPlan], prompts: Sequence[str], generation: GenerationSettings
    ) -> Iterator[CandidateResult]:
        """Each plan's result, yielded once it has answered and the base weights are back.

        A result carries no weights (``adapter_state`` is empty): a full copy per plan would cost the model's size.
        """
        for plan in plans:
            try:
                stats = self.train(plan)
                answers = answers_after(stats, self.model, self.tokenizer, prompts, generation, self.compute_dtype)
            finally:
                self.restore()
            yield CandidateResult(stats=stats, answers=answers, adapter_state={})

    def train_and_answer(
        self, plans: Sequence[TrainPlan], prompts: Sequence[str], generation: GenerationSettings
    ) -> list[CandidateResult]:
        """For each plan: all weights fine-tuned on it from the base weights, then used to answer ``prompts``."""
        return list(self.train_and_answer_each(plans, prompts, generation))

    def train(self, plan: TrainPlan) -> TrainStats:
        """Fine-tune every weight of the model on ``plan``; the trained weights stay until :meth:`restore`."""
        if plan.settings.objective != "sft":
            raise ValueError(
                f"full fine-tuning trains with the sft objective only, not {plan.settings.objective!r} "
                "(distillation's teacher is the model with its adapter disabled, and here there is no adapter)"
            )
        parameters = list(self.model.parameters())
        for parameter in parameters:
            parameter.requires_grad_(True)
        torch.manual_seed(plan.settings.seed)  # as the LoRA engine: nothing depends on what ran before in this process
        with mixed_precision(self.model, self.compute_dtype), training_attention(self.model):
            return train_on_plan(self.model, self.tokenizer, plan, parameters, progress=self.progress)

    def restore(self) -> None:
        """Copy the base weights back into the model, bit for bit, and drop any gradients."""
        with torch.no_grad():
            for name, parameter in self.model.named_parameters():
                parameter.copy_(self.base_weights[name])
        self.model.zero_grad(set_to_none=True)

    def release(self) -> torch.nn.Module:
        """The model with its base weights."""
        self.restore()
        return self.model
