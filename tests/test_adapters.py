"""A fine-tuned model saved as a LoRA adapter on its base (seal_lm.model.adapters), loaded back by --model."""

from __future__ import annotations

import pytest
import torch
from conftest import build_model

from seal_lm.model.adapters import save_difference_adapter
from seal_lm.model.loading import load_model

PROBE = "The Eiffel Tower"


def tuned_copy(vocab_size: int) -> torch.nn.Module:
    """The tiny model plus a rank-2 change to one q_proj and a rank-3 change to one v_proj, as merged LoRA updates leave it."""
    tuned = build_model(vocab_size)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer, (module, rank) in enumerate([("q_proj", 2), ("v_proj", 3)]):
            weight = getattr(tuned.model.layers[layer].self_attn, module).weight
            weight += torch.randn(weight.shape[0], rank, generator=generator) @ torch.randn(
                rank, weight.shape[1], generator=generator
            )
    return tuned


def logits(model: torch.nn.Module, tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(PROBE, return_tensors="pt")).logits


def test_an_adapter_of_the_differences_rank_loads_back_as_the_tuned_model(
    tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch
):
    monkeypatch.setenv("SEAL_LM_CACHE", str(tmp_path / "cache"))
    tuned = tuned_copy(len(tiny_tokenizer))
    base = load_model(str(tiny_model_dir)).model
    fit = save_difference_adapter(tmp_path / "adapter", str(tiny_model_dir), base, tuned, rank=3, dtype=torch.float32)

    assert (fit.rank, fit.modules) == (3, 2)
    assert fit.relative_error < 1e-5
    assert fit.size_bytes == (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_size
    loaded = load_model(str(tmp_path / "adapter")).model
    torch.testing.assert_close(logits(loaded, tiny_tokenizer), logits(tuned, tiny_tokenizer), rtol=1e-4, atol=1e-4)


def test_a_smaller_rank_or_bfloat16_is_an_approximation_and_says_how_close(tiny_model_dir, tiny_tokenizer, tmp_path):
    tuned = tuned_copy(len(tiny_tokenizer))
    rank_one = save_difference_adapter(
        tmp_path / "r1", str(tiny_model_dir), load_model(str(tiny_model_dir)).model, tuned, 1, torch.float32
    )
    bf16 = save_difference_adapter(
        tmp_path / "bf16", str(tiny_model_dir), load_model(str(tiny_model_dir)).model, tuned, 3
    )
    assert rank_one.relative_error > 0.1  # the rank-3 change does not fit in rank 1
    assert 1e-5 < bf16.relative_error < 1e-2  # bf16 rounding only
    assert bf16.size_bytes < rank_one.size_bytes * 3  # half the bytes of float32 at three times the rank


def test_a_difference_outside_the_linear_layers_or_none_at_all_is_refused(tiny_model_dir, tiny_tokenizer, tmp_path):
    tuned = tuned_copy(len(tiny_tokenizer))
    with torch.no_grad():
        tuned.model.norm.weight += 0.5  # what a full fine-tune changes too
    with pytest.raises(ValueError, match="full fine-tune cannot be saved as a LoRA adapter"):
        save_difference_adapter(tmp_path / "a", "base", load_model(str(tiny_model_dir)).model, tuned, 3)
    with pytest.raises(ValueError, match="equals its base"):
        save_difference_adapter(
            tmp_path / "b", "base", load_model(str(tiny_model_dir)).model, build_model(len(tiny_tokenizer)), 3
        )


def test_a_model_whose_output_layer_is_tied_to_its_embeddings(tiny_tokenizer, tmp_path):
    """As in SmolLM2: the output layer's weight is the embedding, listed once among the parameters."""

    def tied(seed: int) -> torch.nn.Module:
        model = build_model(len(tiny_tokenizer), seed=seed)
        model.config.tie_word_embeddings = True
        model.tie_weights()
        return model

    tuned = tied(0)
    with torch.no_grad():
        tuned.model.layers[0].mlp.down_proj.weight += 0.1
    fit = save_difference_adapter(tmp_path / "a", "base", tied(0), tuned, 1, torch.float32)
    assert fit.modules == 1 and fit.relative_error < 1e-5  # a constant shift has rank 1
    with torch.no_grad():
        tuned.model.embed_tokens.weight += 0.1  # the output layer moves with it
    with pytest.raises(ValueError, match="model.embed_tokens.weight"):
        save_difference_adapter(tmp_path / "b", "base", tied(0), tuned, 1)
