"""A fine-tuned model as a LoRA adapter on its base: each linear layer's weight difference, factored by SVD.

A ReST-EM policy is its base plus one merged LoRA update per round, so every linear layer differs from
the base by a matrix of rank at most rounds × the M-step's rank; an adapter of that rank holds the
policy exactly, up to rounding. It is saved as a standard PEFT folder whose ``base_model_name_or_path``
is the base's model spec (``bundled:...`` included), so ``--model FOLDER`` loads it: merged into the
base once, into the cache (:mod:`seal_lm.model.loading`). A policy is then an adapter to share (29 MB for
three rounds on SmolLM2-135M) instead of a copy of every weight (540 MB).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class AdapterFit:
    """How well a saved adapter holds the difference it was made from."""

    rank: int
    modules: int  # linear layers the adapter changes
    relative_error: float  # ‖difference − adapter‖ / ‖difference‖ over all of them (Frobenius)
    size_bytes: int  # of the adapter's weights file


def save_difference_adapter(
    folder: Path,
    base_spec: str,
    base: torch.nn.Module,
    tuned: torch.nn.Module,
    rank: int,
    dtype: torch.dtype = torch.bfloat16,
) -> AdapterFit:
    """Save ``tuned`` as a rank-``rank`` LoRA adapter on ``base`` (which is modified: pass a model loaded for this).

    Only linear layers may differ; any other parameter that does (a norm, an embedding: a full
    fine-tune) raises ValueError, because a LoRA adapter cannot hold it.
    """
    from peft import LoraConfig, get_peft_model

    tuned_modules = dict(tuned.named_modules())
    differences = {}
    for name, module in base.named_modules():
        if isinstance(module, torch.nn.Linear):
            difference = tuned_modules[name].weight.detach().float() - module.weight.detach().float()
            if difference.any():
                differences[name] = difference
    linear_weights = {f"{name}.weight" for name in differences}
    tuned_weights = dict(tuned.named_parameters())  # a weight tied to another is listed once, under its first name
    others = [
        name
        for name, parameter in base.named_parameters()
        if name not in linear_weights and not torch.equal(parameter, tuned_weights[name])
    ]
    if others:
        raise ValueError(
            f"{len(others)} parameters besides linear weights differ (e.g. {others[0]}): "
            "a full fine-tune cannot be saved as a LoRA adapter."
        )
    if not differences:
        raise ValueError("The tuned model equals its base: there is no adapter to save.")
    layer_names = sorted({name.rsplit(".", 1)[-1] for name in differences})
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=layer_names, lora_dropout=0.0)  # scaling 1
    adapted = get_peft_model(base, config)
    adapted.peft_config["default"].base_model_name_or_path = base_spec
    squared_error = squared_norm = 0.0
    with torch.no_grad():
        for name, module in adapted.base_model.model.named_modules():
            if not hasattr(module, "lora_A") or "default" not in module.lora_A:
                continue
            difference = differences.get(name, torch.zeros_like(module.base_layer.weight, dtype=torch.float32))
            u, s, vh = torch.linalg.svd(difference, full_matrices=False)
            kept = min(rank, len(s))
            root = s[:kept].sqrt()
            up, down = u[:, :kept] * root, root[:, None] * vh[:kept]  # difference ≈ up @ down
            lora_up, lora_down = module.lora_B["default"].weight, module.lora_A["default"].weight
            lora_up.zero_()[:, :kept] = up
            lora_down.zero_()[:kept] = down
            stored = lora_up.to(dtype).float() @ lora_down.to(dtype).float()  # as saved
            squared_error += float((difference - stored).square().sum())
            squared_norm += float(difference.square().sum())
    adapted.to(dtype).save_pretrained(folder, save_embedding_layers=False)  # no lookup of the base by its spec
    weights = next(folder.glob("adapter_model.*"))
    return AdapterFit(
        rank=rank,
        modules=len(differences),
        relative_error=(squared_error / squared_norm) ** 0.5,
        size_bytes=weights.stat().st_size,
    )
