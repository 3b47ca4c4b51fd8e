"""Tests for seal_lm.domains.knowledge.self_edits: turning a self-edit into training sequences.

Every parsed self-edit is a list of items, each prefixed with "<title>\\n", followed by the passage
itself as the last sequence.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seal_lm.domains.knowledge.self_edits import SELF_EDIT_STYLES, SelfEditError, parse_self_edit

GPT41_SELF_EDITS = Path(__file__).parents[2] / "shared/data/squad/self_edits_gpt41_eval200.json"

TITLE = "Eiffel Tower"
CONTEXT = "The Eiffel Tower is a wrought-iron tower in Paris. It was completed in 1889."


def parse(text: str, **kwargs):
    return parse_self_edit(text, title=TITLE, context=CONTEXT, **kwargs)


def titled(*items: str) -> list[str]:
    """The expected sequences: each item under the title, then the passage."""
    return [f"{TITLE}\n{item}" for item in items] + [f"{TITLE}\n{CONTEXT}"]


# ---------------------------------------------------------------------------------------------
# Line-based styles (implications, rewrite, ...)
# ---------------------------------------------------------------------------------------------


def test_numbered_list_drops_the_chatty_preamble():
    text = (
        "Here are 10 facts:\n"
        "1. The Eiffel Tower is located in Paris.\n"
        "2) The tower is made of wrought iron.\n"
        "(3) Its construction finished in 1889.\n"
    )

    parsed = parse(text)

    assert parsed.sequences == titled(
        "The Eiffel Tower is located in Paris.",
        "The tower is made of wrought iron.",
        "Its construction finished in 1889.",
    )
    assert parsed.items == 3
    assert parsed.dropped_lines == 1


def test_markdown_bullets_and_bold_are_stripped():
    text = (
        "- **The Eiffel Tower** stands in Paris.\n"
        "* It is made of *wrought iron*.\n"
        "• Gustave Eiffel's company `built` it.\n"
        "## It opened in 1889 for the fair.\n"
    )

    assert parse(text).sequences == titled(
        "The Eiffel Tower stands in Paris.",
        "It is made of wrought iron.",
        "Gustave Eiffel's company built it.",
        "It opened in 1889 for the fair.",
    )


def test_blank_lines_short_lines_and_rules_are_not_items():
    text = "\n\nThe tower is in Paris.\n\n---\nParis, France\nSummary:\n  It was finished in 1889.  \n"

    parsed = parse(text)

    assert parsed.sequences == titled("The tower is in Paris.", "It was finished in 1889.")
    assert parsed.dropped_lines == 3  # "---", the two-word line, and "Summary:"


def test_every_sequence_starts_with_the_title_and_the_passage_comes_last():
    context_with_padding = "\n  " + CONTEXT + "  \n"

    parsed = parse_self_edit(
        "1. A fact about the tower.\n2. Another fact about the tower.", title=TITLE, context=context_with_padding
    )

    assert all(s.startswith(f"{TITLE}\n") for s in parsed.sequences)
    assert parsed.sequences[-1] == f"{TITLE}\n{CONTEXT}"  # the passage, stripped
    assert len(parsed.sequences) == parsed.items + 1


def test_truncated_drops_the_last_line():
    text = "1. The tower is in Paris.\n2. It was finished in 1889.\n3. It was the tallest struc"

    assert parse(text).items == 3
    assert parse(text, truncated=True).sequences == titled("The tower is in Paris.", "It was finished in 1889.")


def test_truncated_ignores_trailing_blank_lines():
    """The last *non-empty* line is the incomplete one."""
    text = "1. The tower is in Paris.\n2. It was finished in 18\n\n"

    assert parse(text, truncated=True).sequences == titled("The tower is in Paris.")


@pytest.mark.parametrize("text", ["", "   \n\n", "Here are the facts:\n---\n\n1.", "Sure!\nOK then"])
def test_content_free_self_edit_raises(text):
    with pytest.raises(SelfEditError, match="no usable lines"):
        parse(text)


def test_a_truncated_one_line_self_edit_raises():
    with pytest.raises(SelfEditError):
        parse("1. The tower is in Paris and was", truncated=True)


@pytest.mark.parametrize("style", ["implications", "implications-long", "implications-very-long", "rewrite"])
def test_line_styles_split_the_same_way(style):
    text = "Here is a rewrite:\nThe Eiffel Tower, in Paris, was finished in 1889.\nParis has a wrought-iron tower from 1889."

    assert parse(text, style=style).sequences == titled(
        "The Eiffel Tower, in Paris, was finished in 1889.", "Paris has a wrought-iron tower from 1889."
    )


def test_a_line_starting_with_a_decimal_number_keeps_it():
    """Only list markers ("1.", "2)") are stripped, not numbers that are part of the fact."""
    text = "3.5 million people visit the tower each year.\n1. 7.3 thousand tonnes of iron were used."

    assert parse(text, style="rewrite").sequences == titled(
        "3.5 million people visit the tower each year.",
        "7.3 thousand tonnes of iron were used.",
    )


# ---------------------------------------------------------------------------------------------
# Style "none": the passage alone
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "1. Whatever the model wrote is ignored."])
def test_style_none_gives_only_the_passage(text):
    parsed = parse(text, style="none")

    assert parsed.sequences == titled()
    assert parsed.items == 0
    assert SELF_EDIT_STYLES["none"].template is None


# ---------------------------------------------------------------------------------------------
# Style "self-qa": one item per question-answer pair
# ---------------------------------------------------------------------------------------------


def test_self_qa_continues_the_question_1_prefix_and_splits_per_pair():
    """The prompt ends with "Question 1: ", so the completion starts mid-question."""
    text = (
        "Where is the Eiffel Tower?\nAnswer: In Paris.\n"
        "Question 2: When was it completed?\nAnswer: In 1889.\n"
        "Question 3: What is it made of?\nAnswer:\n"
    )

    parsed = parse(text, style="self-qa")

    assert parsed.sequences == titled(
        "Question 1: Where is the Eiffel Tower?\nAnswer: In Paris.",
        "Question 2: When was it completed?\nAnswer: In 1889.",
    )
    assert parsed.dropped_lines == 1  # the pair without an answer


def test_self_qa_accepts_a_completion_that_starts_with_question_1():
    text = "Question 1: Where is it?\nAnswer: Paris.\n\nquestion 2. Who built it?\nanswer: Eiffel's company."

    assert parse(text, style="self-qa").sequences == titled(
        "Question 1: Where is it?\nAnswer: Paris.",
        "question 2. Who built it?\nanswer: Eiffel's company.",
    )


def test_self_qa_strips_bold_markers():
    text = "**Question 1:** Where is it?\n**Answer:** Paris.\n**Question 2:** When was it built?\n**Answer:** 1889."

    assert parse(text, style="self-qa").sequences == titled(
        "Question 1: Where is it?\nAnswer: Paris.",
        "Question 2: When was it built?\nAnswer: 1889.",
    )


def test_self_qa_drops_a_bold_pair_with_no_answer():
    text = "**Question 1:** Where is it?\n**Answer:** Paris.\n**Question 2:** When was it built?\n**Answer:**"

    assert parse(text, style="self-qa").sequences == titled("Question 1: Where is it?\nAnswer: Paris.")


def test_self_qa_truncated_drops_the_last_pair():
    text = "Where is it?\nAnswer: Paris.\nQuestion 2: When was it built?\nAnswer: In 18"

    assert parse(text, style="self-qa", truncated=True).sequences == titled("Question 1: Where is it?\nAnswer: Paris.")


def test_self_qa_without_any_answer_raises():
    with pytest.raises(SelfEditError, match="no usable question-answer pairs"):
        parse("Where is it?\nQuestion 2: When was it built?", style="self-qa")


# ---------------------------------------------------------------------------------------------
# Style "implications-reasoning": only what follows the last "Implications:"
# ---------------------------------------------------------------------------------------------


def test_reasoning_style_keeps_only_the_text_after_the_last_marker():
    text = (
        "The passage describes a tower in Paris and its completion date, which are long-lived facts.\n"
        "I will list the implications: what it says about Paris and about 1889.\n"
        "IMPLICATIONS:\n"
        "1. Paris is home to the Eiffel Tower.\n"
        "2. The tower has stood since 1889.\n"
    )

    assert parse(text, style="implications-reasoning").sequences == titled(
        "Paris is home to the Eiffel Tower.", "The tower has stood since 1889."
    )


def test_reasoning_style_without_the_marker_raises():
    with pytest.raises(SelfEditError, match="no 'Implications:' section"):
        parse("Reasoning: the tower is old.\n1. The tower is in Paris.", style="implications-reasoning")


# ---------------------------------------------------------------------------------------------
# A real GPT-4.1 self-edit from SEAL's data
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not GPT41_SELF_EDITS.is_file(), reason=f"{GPT41_SELF_EDITS} not available")
def test_real_gpt41_completion():
    record = json.loads(GPT41_SELF_EDITS.read_text(encoding="utf-8"))[0]
    completion = record["completions"][0]
    assert completion.startswith("**Implications:**\n")  # the case this test is about

    parsed = parse_self_edit(completion, title=record["title"], context=record["context"])

    assert parsed.items == 14
    assert parsed.dropped_lines == 1  # the "**Implications:**" header
    assert len(parsed.sequences) == 15
    assert all(s.startswith(record["title"] + "\n") for s in parsed.sequences)
    assert not any("Implications" in s or "*" in s for s in parsed.sequences)
    assert parsed.sequences[0] == (
        record["title"]
        + "\nThe Shah’s army suffered from internal divisions and feuding, weakening their overall effectiveness."
    )
    assert parsed.sequences[-1] == f"{record['title']}\n{record['context'].strip()}"
