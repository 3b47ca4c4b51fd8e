"""Two training operations for a packed row of sequences over a frozen base model.

The batched engine packs the sequences of K candidates into one padding-free row. Left to
transformers, that row costs more than its sequences: attention runs over the whole row behind a
block-diagonal mask (quadratic in the row's length, not in each sequence's), and the cross-entropy
keeps vocabulary-sized logits, their log-softmax and a zero-filled gradient of the same size for the
backward pass. The two operations here remove both costs, with the same results (measured in
BENCHMARKS.md on the bundled model: ~7% of a typical step, and ~140 MiB per 1,000 labelled tokens):

- :func:`per_sequence_attention`: while active, attention runs causally within each packed sequence
  (one SDPA call per sequence; no mask is built).
- :func:`frozen_head_token_losses`: per-token cross-entropy of a frozen output layer, computed in row
  chunks, with the gradient for the hidden states made in the same pass; no logits are kept.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F

PACKED_ATTENTION = "seal_per_sequence"
CHUNK_ROWS = 256  # rows of logits alive at once: 256 × a 49k vocabulary ≈ 50 MB in float32


def _attention_within_sequences(
    module, query, key, value, attention_mask, scaling=None, dropout=0.0, cu_seq_lens_q=None, **kwargs
):
    """Causal attention of each packed sequence over itself. ``cu_seq_lens_q``: the sequences' start offsets and the row's end."""
    from transformers.integrations.sdpa_attention import repeat_kv

    if query.shape[0] != 1 or cu_seq_lens_q is None:
        raise ValueError("per-sequence attention needs one packed row and its sequence boundaries (cu_seq_lens_q)")
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    bounds = cu_seq_lens_q.tolist()
    outputs = [
        F.scaled_dot_product_attention(
            query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], dropout_p=dropout, is_causal=True, scale=scaling
        )
        for s, e in zip(bounds[:-1], bounds[1:])
    ]
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


@functools.cache
def _registered_attention() -> str:
    """Register per-sequence attention with transformers (on first use: the command line checks its input first)."""
    from transformers import AttentionInterface

    AttentionInterface.register(PACKED_ATTENTION, _attention_within_sequences)
    return PACKED_ATTENTION


@contextlib.contextmanager
def per_sequence_attention(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, ``model`` attends within packed sequences; pass ``cu_seq_lens_q`` to its forward.

    Only SDPA and eager attention are replaced: flash-attention implementations already run packed rows
    sequence by sequence (variable-length kernels) from the same arguments.
    """
    previous = model.config._attn_implementation
    if previous not in ("sdpa", "eager"):
        yield
        return
    model.set_attn_implementation(_registered_attention())
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def sequence_boundaries(positions: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """``cu_seq_lens_q`` for a packed row whose positions restart at 0 with every sequence, for ``model``'s attention.

    Per-sequence attention reads the boundaries as Python ints in every layer, so while it is active
    they are kept on the CPU (one device sync per step instead of one per layer); flash attention
    takes them on the row's device.
    """
    starts = torch.nonzero(positions.reshape(-1) == 0).flatten()
    bounds = torch.cat([starts, torch.tensor([positions.numel()], device=positions.device)]).to(torch.int32)
    return bounds.cpu() if model.config._attn_implementation == PACKED_ATTENTION else bounds


class _FrozenHeadCrossEntropy(torch.autograd.Function):
    """Per-token losses of ``hidden @ weight.T`` against ``targets``; ``weight`` gets no gradient."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        losses = torch.empty(len(hidden), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden)  # d loss_i / d hidden_i, made here so no logits are kept
        for first in range(0, len(hidden), CHUNK_ROWS):
            rows = slice(first, first + CHUNK_ROWS)
            chunk_targets = targets[rows]
            logits = (hidden[rows] @ weight.T).float()
            log_normaliser = torch.logsumexp(logits, dim=-1)
            losses[rows] = log_normaliser - logits.gather(1, chunk_targets[:, None]).squeeze(1)
            probabilities = logits.sub_(log_normaliser[:, None]).exp_()
            probabilities[torch.arange(len(chunk_targets), device=hidden.device), chunk_targets] -= 1
            grad_hidden[rows] = probabilities.to(weight.dtype) @ weight
        ctx.save_for_backward(grad_hidden)
        return losses

    @staticmethod
    def backward(ctx, grad_losses: torch.Tensor):
        (grad_hidden,) = ctx.saved_tensors
        return grad_hidden * grad_losses[:, None].to(grad_hidden.dtype), None, None


def frozen_head_token_losses(
    hidden: torch.Tensor, output_layer: torch.nn.Linear, targets: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of each row of ``hidden`` [N, d] through the (frozen, bias-free) output layer against ``targets`` [N].

    Equal to ``F.cross_entropy(output_layer(hidden).float(), targets, reduction="none")``, for training:
    the gradient for ``hidden`` is computed in the forward pass, chunk by chunk.
    """
    if output_layer.bias is not None or output_layer.weight.requires_grad:
        raise ValueError("frozen_head_token_losses needs a frozen output layer without bias")
    return _FrozenHeadCrossEntropy.apply(hidden, output_layer.weight, targets)
