"""Every committed version of a ledger as a ready model, cheaply.

A version differs from the base model only in the layers LoRA adapts (the ledger's target modules),
so each version's model is a copy of the base model that *shares* every other parameter with it and
owns only its adapted layers: ten versions of SmolLM2-135M with ``q_proj,v_proj`` adapted cost the
base model once plus ten times those layers. Versions are restored from the ledger bit for bit
(:func:`seal_lm.continual.versions.restore`) on first use and kept, least recently used first out, up
to ``max_loaded``.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch

from seal_lm.adapt.lora import InnerLoop, target_names
from seal_lm.continual.ledger import Ledger
from seal_lm.continual.versions import restore
from seal_lm.model.loading import LoadedModel


def copy_sharing(model: torch.nn.Module, own: set[str]) -> torch.nn.Module:
    """A copy of ``model`` that owns the parameters named in ``own`` and shares every other one with ``model``."""
    shared = {id(p): p for name, p in model.named_parameters(remove_duplicate=False) if name not in own}
    return copy.deepcopy(model, memo=shared)


class ModelVersions:
    """The models of a ledger's versions, restored on demand from one pristine base model."""

    def __init__(
        self, base: LoadedModel, ledger_folder: str | Path, target_modules: Sequence[str], max_loaded: int = 4
    ):
        self.base = base
        self.ledger_folder = Path(ledger_folder)
        self.max_loaded = max_loaded
        self._own = {f"{name}.weight" for name in target_names(base.model, tuple(target_modules))}
        self._loaded: OrderedDict[int, torch.nn.Module] = OrderedDict()
        self._lock = threading.Lock()

    def fresh_copy(self) -> torch.nn.Module:
        """A model with the base weights whose adapted layers are its own to train and merge into."""
        return copy_sharing(self.base.model, self._own)

    def model(self, version: int) -> torch.nn.Module:
        """``version``'s model (restored now if it is not loaded); never modified afterwards."""
        with self._lock:
            if version in self._loaded:
                self._loaded.move_to_end(version)
                return self._loaded[version]
            with Ledger.open(self.ledger_folder, readonly=True) as ledger:
                model = restore(ledger, version, InnerLoop(self.fresh_copy(), self.base.tokenizer))
            for parameter in model.parameters():
                parameter.requires_grad_(False)
            self._loaded[version] = model.eval()
            while len(self._loaded) > self.max_loaded:
                self._loaded.popitem(last=False)
            return model

    def loaded(self) -> list[int]:
        """The versions whose models are in memory, least recently used first."""
        with self._lock:
            return list(self._loaded)
