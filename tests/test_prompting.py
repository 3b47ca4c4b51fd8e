"""Tests for seal_lm.model.prompting: one PromptTemplate rendered as plain text or as a chat.

Chat rendering needs a tokenizer with a chat template: the suite's tiny offline tokenizer has one.
"""

from __future__ import annotations

import pytest

from seal_lm.domains.knowledge.self_edits import SELF_EDIT_STYLES
from seal_lm.model.prompting import PromptFormatter, PromptTemplate

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


def test_chat_mode_renders_system_user_and_response_prefix_in_order(tiny_tokenizer):
    rendered = PromptFormatter(tiny_tokenizer, chat=True)(TEMPLATE, **FIELDS)

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


def test_chat_mode_without_system_has_only_the_user_turn(tiny_tokenizer):
    template = PromptTemplate(plain="unused {title}", user="Tell me about {title}.")

    rendered = PromptFormatter(tiny_tokenizer, chat=True)(template, **FIELDS)

    assert "<|im_start|>system" not in rendered
    assert rendered == "<|im_start|>user\nTell me about Eiffel Tower.<|im_end|>\n<|im_start|>assistant\n"


def test_chat_mode_braces_inside_field_values_are_kept_literally(tiny_tokenizer):
    """Fields are substituted once; a passage containing braces must not be re-formatted."""
    rendered = PromptFormatter(tiny_tokenizer, chat=True)(TEMPLATE, title="Sets", context="A set {x} and {title}.")

    assert "A set {x} and {title}." in rendered


def test_chat_rendering_tokenizes_specials_as_single_tokens(tiny_tokenizer):
    """Sanity check on the fixture: the ChatML markers are special tokens, not split into bytes."""
    rendered = PromptFormatter(tiny_tokenizer, chat=True)(TEMPLATE, **FIELDS)
    ids = tiny_tokenizer(rendered, add_special_tokens=False)["input_ids"]

    start_id = tiny_tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids.count(start_id) == 3  # system, user, assistant
    assert tiny_tokenizer.decode(ids) == rendered


def test_self_qa_style_in_both_modes(tiny_tokenizer):
    """The self-qa prompt ends with "Question 1: " in both forms, so its parser can rely on it."""
    template = SELF_EDIT_STYLES["self-qa"].template

    plain = PromptFormatter(None, chat=False)(template, **FIELDS)
    chat = PromptFormatter(tiny_tokenizer, chat=True)(template, **FIELDS)

    assert plain.endswith("Passage:\nEiffel Tower\nThe Eiffel Tower is in Paris.\n\nQuestion 1: ")
    assert chat.endswith("<|im_end|>\n<|im_start|>assistant\nQuestion 1: ")
    assert "The Eiffel Tower is in Paris." in chat
