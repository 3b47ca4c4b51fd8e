"""What the inner loop minimises: next-token SFT, context distillation, or a weighted sum of the two.

*Context distillation*: the teacher is the frozen model (the LoRA adapter disabled) with the
document in its prompt; the student is the adapted model without it. At every position of a
training sequence whose next token SFT would learn, the loss is the forward KL divergence
KL(teacher || student) between their next-token distributions over the whole vocabulary, averaged
over those positions (as SFT's cross-entropy is). Forward KL is cross-entropy against the teacher's
soft labels (minus the teacher's constant entropy): it asks the student to cover everything the
teacher finds likely, it is zero exactly when the two agree, and SFT is its special case with a
one-hot teacher. The full vocabulary needs no truncation choice (top-k would drop the teacher's tail).

The teacher's log-probabilities of a sequence never change during a fine-tune (its weights are
frozen), so they are computed once, at the sequence's first step, and reused every epoch while
they fit in :data:`TEACHER_CACHE_BYTES`; beyond that they are recomputed at every step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

INNER_OBJECTIVES = {
    "sft": "next-token cross-entropy on the training sequences (SEAL)",
    "distill": "match the frozen model that has the document in its prompt (context distillation)",
    "sft+distill": "(1 - w) * sft + w * distill, w = --distill-weight",
}
TEACHER_CACHE_BYTES = 2**30  # teacher log-probabilities kept across epochs up to this size (float32)


def distill_weight(objective: str, weight: float) -> float:
    """The weight ``w`` of the distillation term in ``(1 - w) * sft + w * distill`` for ``objective``."""
    return {"sft": 0.0, "distill": 1.0, "sft+distill": weight}[objective]


def combined_loss(objective: str, weight: float, sft: torch.Tensor, distill: torch.Tensor | None) -> torch.Tensor:
    """The objective's loss from its parts (``distill`` is None for ``sft``)."""
    if objective == "sft":
        return sft
    if objective == "distill":
        return distill
    return (1 - weight) * sft + weight * distill


def distillation_loss(
    student_logits: torch.Tensor, teacher_log_probs: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean over positions where ``mask`` is true of KL(teacher || student), in nats.

    ``student_logits`` and ``teacher_log_probs`` are ``(batch, positions, vocabulary)``, aligned
    position by position (each predicts the same next token); ``mask`` is ``(batch, positions)``.
    """
    student = torch.log_softmax(student_logits.float(), dim=-1)[mask]
    teacher = teacher_log_probs[mask]
    per_position = torch.nn.functional.kl_div(student, teacher, reduction="none", log_target=True).sum(-1)
    return per_position.mean()


class Teacher:
    """The frozen model's next-token log-probabilities for each training sequence, with its context in front.

    ``model`` is a PEFT model whose adapter is disabled for the teacher's forward passes.
    ``contexts[i]`` (token ids) precede ``sequences[i]``; an empty context makes the teacher the
    frozen model on the sequence itself, so its term keeps the model's predictions there.
    """

    def __init__(
        self, model: torch.nn.Module, contexts: Sequence[list[int]], sequences: Sequence[list[int]], vocabulary: int
    ):
        if not any(contexts):
            raise ValueError(
                "distillation needs the document in the teacher's prompt, and no training example has one "
                "(TrainExample.context); this domain trains with --inner-objective sft only"
            )
        self.model, self.contexts, self.sequences = model, contexts, sequences
        positions = sum(len(ids) - 1 for ids in sequences)
        self.cache: dict[int, torch.Tensor] | None = {} if positions * vocabulary * 4 <= TEACHER_CACHE_BYTES else None

    def batch(self, indices: Sequence[int], width: int) -> torch.Tensor:
        """Log-probabilities for the sequences ``indices`` (right-padded with zeros to ``width - 1`` positions)."""
        rows = [self.log_probs(i) for i in indices]
        padded = torch.zeros(len(rows), width - 1, rows[0].shape[-1], device=rows[0].device)
        for row, log_probs in enumerate(rows):
            padded[row, : len(log_probs)] = log_probs
        return padded

    def log_probs(self, index: int) -> torch.Tensor:
        """``(len(sequence) - 1, vocabulary)``: position j predicts token j + 1 of sequence ``index``, as the student's does."""
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        context, ids = self.contexts[index], self.sequences[index]
        device = next(self.model.parameters()).device
        training = self.model.training
        self.model.eval()  # the teacher is deterministic, whatever dropout the student trains with
        with torch.no_grad(), self.model.disable_adapter():
            logits = self.model(input_ids=torch.tensor([context + ids], device=device)).logits
        self.model.train(training)
        log_probs = torch.log_softmax(logits[0, len(context) : len(context) + len(ids) - 1].float(), dim=-1)
        if self.cache is not None:
            self.cache[index] = log_probs
        return log_probs
