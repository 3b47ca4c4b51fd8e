"""The packed-row training operations give the same numbers as the plain computations they replace."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seal_lm.adapt import packed_ops
from seal_lm.adapt.packed_ops import frozen_head_token_losses, per_sequence_attention, sequence_boundaries
from seal_lm.model.loading import load_model


@pytest.mark.parametrize("chunk_rows", [4, 256])
def test_frozen_head_losses_and_gradients_match_cross_entropy(monkeypatch, chunk_rows):
    monkeypatch.setattr(packed_ops, "CHUNK_ROWS", chunk_rows)  # 4: several chunks and a ragged last one
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False).requires_grad_(False)
    hidden = torch.randn(11, 16, requires_grad=True)
    targets = torch.randint(0, 50, (11,))
    weights = torch.rand(11)  # a weighted sum, as per-adapter means make it

    fused = frozen_head_token_losses(hidden, head, targets)
    (fused * weights).sum().backward()
    fused_grad, hidden.grad = hidden.grad, None
    plain = F.cross_entropy(head(hidden), targets, reduction="none")
    (plain * weights).sum().backward()

    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(fused_grad, hidden.grad)


def test_frozen_head_refuses_a_trainable_or_biased_layer():
    with pytest.raises(ValueError, match="frozen output layer"):
        frozen_head_token_losses(torch.randn(2, 4), torch.nn.Linear(4, 8, bias=False), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="frozen output layer"):
        frozen_head_token_losses(torch.randn(2, 4), torch.nn.Linear(4, 8).requires_grad_(False), torch.tensor([1, 2]))


def test_sequence_boundaries_from_restarting_positions(tiny_model_dir):
    model = load_model(str(tiny_model_dir)).model
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    assert sequence_boundaries(positions, model).tolist() == [0, 3, 5, 9]
    with per_sequence_attention(model):  # read as Python ints in every layer: kept on the host
        assert sequence_boundaries(positions, model).device.type == "cpu"


def test_per_sequence_attention_equals_each_sequence_alone(tiny_model_dir):
    model = load_model(str(tiny_model_dir)).model
    sequences = [torch.tensor([5, 9, 30, 2, 7]), torch.tensor([11, 3]), torch.tensor([40, 41, 42, 43, 44, 45])]
    alone = [model.base_model(input_ids=s[None]).last_hidden_state[0] for s in sequences]
    ids = torch.cat(sequences)[None]
    positions = torch.cat([torch.arange(len(s)) for s in sequences])[None]
    masked = model.base_model(input_ids=ids, position_ids=positions, use_cache=False).last_hidden_state[
        0
    ]  # block-diagonal mask

    with per_sequence_attention(model):
        packed = model.base_model(
            input_ids=ids, position_ids=positions, cu_seq_lens_q=sequence_boundaries(positions, model)
        ).last_hidden_state[0]
    assert model.config._attn_implementation != packed_ops.PACKED_ATTENTION  # restored

    torch.testing.assert_close(packed, torch.cat(alone), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed, masked, rtol=1e-5, atol=1e-5)
