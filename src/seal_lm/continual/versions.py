"""Ledger versions of a model: what a version stores, and how its weights are put back or exported.

The first version records the base model (its spec, dtype, commit mode and inner-loop settings, and
a SHA-256 fingerprint of the layers LoRA adapts, so a ledger is never applied to another base
model). How versions are stored:

- ``merge``: a version holds the adapted layers' weights after merging (the first version too);
- ``stack``: a version holds only its own adapter; the model is the base plus the adapters of the
  version's ancestry, merged in order (a fraction of the disk of ``merge``).

:func:`restore` puts any version's weights back bit for bit, in either mode.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from seal_lm.adapt.lora import InnerLoop, InnerLoopSettings, target_names
from seal_lm.continual.ledger import Ledger, LedgerError, Version
from seal_lm.model.loading import load_model
from seal_lm.runs.rundir import remove_partial_writes, write_folder

COMMIT_MODES = ("merge", "stack")
BASE_FINGERPRINT = "base_model.sha256"  # in the first version: identifies the base model's adapted layers


def adapted_weights(model: torch.nn.Module, target_modules: Sequence[str]) -> dict[str, torch.Tensor]:
    """The weights of the layers LoRA adapts (what a ``merge`` version stores), by state-dict name."""
    modules = dict(model.named_modules())
    return {f"{name}.weight": modules[name].weight for name in target_names(model, tuple(target_modules))}


def ledger_setup(ledger: Ledger) -> dict[str, Any]:
    """What the ledger's first version says about the model: spec, dtype, commit mode, inner-loop settings."""
    versions = ledger.versions()
    if not versions or "commit" not in versions[0].update.record.details:
        raise LedgerError(
            f"{ledger.folder} was not written by seal adapt or seal eval continual (no model setup in version 1)."
        )
    return versions[0].update.record.details


def restore(ledger: Ledger, version: int, inner_loop: InnerLoop) -> torch.nn.Module:
    """Set the freshly loaded base model of ``inner_loop`` to ``version``'s weights, bit for bit; returns it.

    Refuses a base model whose adapted layers differ from the ledger's first version.
    """
    setup = ledger_setup(ledger)
    chain = lineage(ledger, version)
    model = inner_loop.base_model
    recorded = ledger.load_weights(chain[0].id)[BASE_FINGERPRINT]
    if not torch.equal(_fingerprint(adapted_weights(model, setup["inner_loop"]["target_modules"])), recorded):
        raise LedgerError(
            f"{ledger.folder} was started from another model than {setup['model']!r} as loaded now (its adapted layers differ)."
        )
    if setup["commit"] == "stack":
        settings = InnerLoopSettings(
            **{**setup["inner_loop"], "target_modules": tuple(setup["inner_loop"]["target_modules"])}
        )
        for step in chain[1:]:
            inner_loop.load_adapter(ledger.load_weights(step.id), settings)
            model = inner_loop.merge_adapter()
    elif len(chain) > 1:
        unexpected = model.load_state_dict(ledger.load_weights(version), strict=False).unexpected_keys
        if unexpected:
            raise LedgerError(f"version {version} has tensors this model lacks ({', '.join(unexpected[:3])}).")
    return model


def export_version(ledger: Ledger, version: int, target: str | Path) -> Path:
    """Write ``version`` as a Hugging Face model folder (``--model`` accepts it), atomically; returns it."""
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"{target} exists and is not an empty folder; pass a new folder to export into.")
    setup = ledger_setup(ledger)
    loaded = load_model(setup["model"], dtype=setup["dtype"], device="cpu")
    model = restore(ledger, version, InnerLoop(loaded.model, loaded.tokenizer))

    def save(staging: Path) -> None:
        model.save_pretrained(staging)
        loaded.tokenizer.save_pretrained(staging)

    remove_partial_writes(
        target
    )  # left by a killed export into the same folder (two exports into one folder clash anyway)
    return write_folder(target, save)


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors serialised as safetensors (identifies an adapter whether or not it was kept)."""
    return hashlib.sha256(safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()})).hexdigest()


def lineage(ledger: Ledger, version: int) -> list[Version]:
    """``version`` and its ancestors, the first version first."""
    chain = [ledger.get(version)]
    while chain[-1].parent is not None:
        chain.append(ledger.get(chain[-1].parent))
    return chain[::-1]


def initial_weights(model: torch.nn.Module, target_modules: Sequence[str], commit: str) -> dict[str, torch.Tensor]:
    """The first version: the base model's fingerprint, and in ``merge`` mode its adapted layers (to diff against)."""
    weights = adapted_weights(model, target_modules)
    return {BASE_FINGERPRINT: _fingerprint(weights), **(weights if commit == "merge" else {})}


def _fingerprint(weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """The SHA-256 of the weights, as 32 bytes in a tensor."""
    return torch.tensor(list(bytes.fromhex(tensors_sha256(weights))), dtype=torch.uint8)
