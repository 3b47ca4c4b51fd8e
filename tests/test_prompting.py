"""Tests for seal_lm.model.prompting: one PromptTemplate rendered as plain text or as a chat.

Chat rendering needs a tokenizer with a chat template. Rather than download one, we train a tiny
byte-level BPE tokenizer offline and give it a ChatML template.
"""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from seal_lm.domains.knowledge.self_edits import SELF_EDIT_STYLES
from seal_lm.model.prompting import PromptFormatter, PromptTemplate

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def chatml_tokenizer() -> PreTrainedTokenizerFast:
    """A tiny ByteLevel BPE tokenizer with ChatML special tokens and chat template, built offline."""
    sentences = [
        "Read the passage below and list short facts.",
        "The Eiffel Tower is in Paris. It was completed in 1889.",
        "You are a helpful assistant. Question 1: Answer:",
    ]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(sentences, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", bos_token="<|im_start|>", pad_token="<|im_end|>"
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


TEMPLATE = PromptTemplate(
    plain="Passage:\n{title}\n{context}\n\nFacts:\n",
    user="List facts about {title}.\n\n{context}",
    system="You are a careful note-taker about {title}.",
    response_prefix="Facts about {title}:\n1. ",
)
FIELDS = {"title": "Eiffel Tower", "context": "The Eiffel Tower is in Paris."}


def test_plain_mode_formats_the_plain_template_without_the_tokenizer():
    formatter = PromptFormatter(tokenizer=None, chat=False)  # None: plain mode must not touch it

    assert formatter(TEMPLATE, **FIELDS) == "Passage:\nEiffel Tower\nThe Eiffel Tower is in Paris.\n\nFacts:\n"


def test_plain_mode_missing_field_raises_key_error():
    with pytest.raises(KeyError, match="context"):
        PromptFormatter(tokenizer=None, chat=False)(TEMPLATE, title="Eiffel Tower")


def test_chat_mode_renders_system_user_and_response_prefix_in_order(chatml_tokenizer):
    rendered = PromptFormatter(chatml_tokenizer, chat=True)(TEMPLATE, **FIELDS)

    assert rendered == (
        "<|im_start|>system\nYou are a careful note-taker about Eiffel Tower.<|im_end|>\n"
        "<|im_start|>user\nList facts about Eiffel Tower.\n\nThe Eiffel Tower is in Paris.<|im_end|>\n"
        "<|im_start|>assistant\n"
        "Facts about Eiffel Tower:\n1. "
    )
    # The same, said as the order of the parts (what matters for any chat template).
    positions = [
        rendered.index("You are a careful note-taker about Eiffel Tower."),
        rendered.index("List facts about Eiffel Tower."),
        rendered.index("<|im_start|>assistant\n"),
        rendered.index("Facts about Eiffel Tower:\n1. "),
    ]
    assert positions == sorted(positions)


def test_chat_mode_without_system_has_only_the_user_turn(chatml_tokenizer):
    template = PromptTemplate(plain="unused {title}", user="Tell me about {title}.")

    rendered = PromptFormatter(chatml_tokenizer, chat=True)(template, **FIELDS)

    assert "<|im_start|>system" not in rendered
    assert rendered == "<|im_start|>user\nTell me about Eiffel Tower.<|im_end|>\n<|im_start|>assistant\n"


def test_chat_mode_braces_inside_field_values_are_kept_literally(chatml_tokenizer):
    """Fields are substituted once; a passage containing braces must not be re-formatted."""
    rendered = PromptFormatter(chatml_tokenizer, chat=True)(TEMPLATE, title="Sets", context="A set {x} and {title}.")

    assert "A set {x} and {title}." in rendered


def test_chat_rendering_tokenizes_specials_as_single_tokens(chatml_tokenizer):
    """Sanity check on the fixture: the ChatML markers are special tokens, not split into bytes."""
    rendered = PromptFormatter(chatml_tokenizer, chat=True)(TEMPLATE, **FIELDS)
    ids = chatml_tokenizer(rendered, add_special_tokens=False)["input_ids"]

    start_id = chatml_tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids.count(start_id) == 3  # system, user, assistant
    assert chatml_tokenizer.decode(ids) == rendered


def test_self_qa_style_in_both_modes(chatml_tokenizer):
    """The self-qa prompt ends with "Question 1: " in both forms, so its parser can rely on it."""
    template = SELF_EDIT_STYLES["self-qa"].template

    plain = PromptFormatter(None, chat=False)(template, **FIELDS)
    chat = PromptFormatter(chatml_tokenizer, chat=True)(template, **FIELDS)

    assert plain.endswith("Passage:\nEiffel Tower\nThe Eiffel Tower is in Paris.\n\nQuestion 1: ")
    assert chat.endswith("<|im_end|>\n<|im_start|>assistant\nQuestion 1: ")
    assert "The Eiffel Tower is in Paris." in chat
