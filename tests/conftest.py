"""Shared fixtures: a tiny random-weight Llama and a byte-level tokenizer, built offline in seconds.

``tiny_model_dir`` is a Hugging Face folder (config, weights, tokenizer with a ChatML template) that
``seal_lm.model.loading.load_model`` loads like any real model.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

# One compute thread per test process (the tiny models gain nothing from more), which also keeps
# `--executor auto` in-process, so a test's monkeypatches reach the code its command runs.
# Tests of the multi-core defaults set OMP_NUM_THREADS themselves.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Flags that make a command on the tiny model finish in seconds: one epoch of a rank-4 adapter, short generations.
TINY_RUN = "--epochs 1 --lora-rank 4 --lora-alpha 8 --self-edit-max-tokens 16 --answer-max-tokens 4".split()

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.",
    "Genghis Khan founded the Mongol Empire. The Shah fled rather than surrender.",
    "Question: Who built it? Answer: Gustave Eiffel's company.",
    "Read the passage below and list 10 short facts that it states or implies.",
    "Topic: Water\nQuestion: At what temperature does water boil?\nAnswer: 100 degrees",
]


def text_id(text: str) -> str:
    """The id of a passage with this (already stripped) text: its SHA-256 hex digest, written out here
    so tests check the id rule rather than restate the code's."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A ByteLevel BPE tokenizer (any text encodes) with ChatML special tokens and chat template."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(CORPUS * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", bos_token="<|im_start|>", pad_token="<|im_end|>"
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_model(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer Llama with hidden size 32: random weights, a few thousand parameters."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=1,
        bos_token_id=0,
        pad_token_id=1,
    )
    return LlamaForCausalLM(config)


@pytest.fixture(scope="session")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved tiny model folder; tests load it with ``load_model(str(path))``."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    build_model(len(tiny_tokenizer)).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def reference_squad_scores(squad_data: list[dict], predictions: dict[str, str]) -> dict[str, float]:
    """Corpus-level SQuAD v1.1 exact match and F1 (in percent) of ``predictions`` (question id → answer)
    on official-format ``data``, by torchmetrics' maintained implementation of the official metric."""
    from torchmetrics.functional.text import squad

    targets = [
        {
            "id": qa["id"],
            "answers": {
                "text": [a["text"] for a in qa["answers"]],
                "answer_start": [a.get("answer_start", 0) for a in qa["answers"]],
            },
        }
        for article in squad_data
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]
    scores = squad([{"id": t["id"], "prediction_text": predictions.get(t["id"], "")} for t in targets], targets)
    return {metric: float(value) for metric, value in scores.items()}


@pytest.fixture
def keep_threads(monkeypatch):
    """Restores this process's compute threads and ``OMP_NUM_THREADS`` after a ``--threads`` command."""
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", str(torch.get_num_threads())))
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
