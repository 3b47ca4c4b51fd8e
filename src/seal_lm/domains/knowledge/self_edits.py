"""Self-edit prompts for passages, and the parsing of a self-edit into training sequences.

A self-edit is text the model writes about a passage (implications, rewrites, question-answer
pairs). Following SEAL, it becomes training data like this: split it into items (one per line, or
one per question-answer pair), drop chatty preamble lines, prefix every item with the passage
title, and always append the original passage as one more sequence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from seal_lm.choices import check_choice
from seal_lm.model.prompting import PromptTemplate


class SelfEditError(ValueError):
    """A self-edit could not be turned into any training sequence."""


@dataclass(frozen=True)
class SelfEditStyle:
    """A named self-edit prompt and how its output is split into items."""

    template: PromptTemplate | None  # None: no generation (the passage alone)
    split: str = "lines"  # "lines" | "qa" | "reasoning-then-lines"


def _facts_prompt(paper_instruction: str, count: int) -> PromptTemplate:
    return PromptTemplate(
        plain=(
            f"Let's read the following passage and produce {paper_instruction} derived directly or indirectly "
            "from the content.\n\nPassage:\n{title}\n{context}\n\nImplications:\n"
        ),
        user=(
            f"Read the passage below and list {count} short facts that it states or implies. Write one fact per "
            f"line, numbered 1 to {count}. Each fact is one complete sentence that names its subject.\n\n"
            "Passage:\n{title}\n{context}"
        ),
    )


SELF_EDIT_STYLES: dict[str, SelfEditStyle] = {
    "implications": SelfEditStyle(_facts_prompt("a list of implications", 10)),
    "implications-long": SelfEditStyle(_facts_prompt("a long list of implications", 20)),
    "implications-very-long": SelfEditStyle(_facts_prompt("a very long list of implications", 30)),
    "implications-reasoning": SelfEditStyle(
        PromptTemplate(
            plain=(
                "Let's read the following passage, reason step by step about what it implies, and then produce a "
                "list of implications derived directly or indirectly from the content.\n\n"
                "Passage:\n{title}\n{context}\n\nReasoning:\n"
            ),
            user=(
                "Read the passage below. First write 'Reasoning:' and think briefly about what it means. Then write "
                "'Implications:' and list 10 short facts it states or implies, one per line, numbered 1 to 10.\n\n"
                "Passage:\n{title}\n{context}"
            ),
        ),
        split="reasoning-then-lines",
    ),
    "rewrite": SelfEditStyle(
        PromptTemplate(
            plain=(
                "Let's read the following passage and rewrite it in a few different ways, each one separated by a "
                "newline.\n\nPassage:\n{title}\n{context}\n\nRewritten passages:\n"
            ),
            user=(
                "Rewrite the passage below in 3 different ways. Write each rewrite as one paragraph on its own line, "
                "keeping every name, date and number.\n\nPassage:\n{title}\n{context}"
            ),
        )
    ),
    "self-qa": SelfEditStyle(
        PromptTemplate(
            plain=(
                "Let's read the following passage and rewrite it in a question-answer format.\n\n"
                "Passage:\n{title}\n{context}\n\nQuestion 1: "
            ),
            user=(
                "Write 8 questions about the passage below, each followed by its answer, in this format:\n"
                "Question 1: ...\nAnswer: ...\n\nPassage:\n{title}\n{context}"
            ),
            response_prefix="Question 1: ",
        ),
        split="qa",
    ),
    "none": SelfEditStyle(template=None),
}

_LIST_MARKER = re.compile(r"^\s*(?:#+|[-*•]+|\(?\d{1,3}[.):])(?=\s)\s*")
_MARKDOWN_EMPHASIS = re.compile(r"\*+|`+|(?<!\w)__|__(?!\w)")  # keeps snake_case and C#
_QUESTION_START = re.compile(r"(?:^|\n)\s*\**Question\s*\d*\s*[:.]", re.I)


@dataclass(frozen=True)
class ParsedSelfEdit:
    """Training sequences made from a self-edit, and what was dropped on the way."""

    sequences: list[str]
    items: int  # self-edit items kept (the passage sequence not counted)
    dropped_lines: int


def parse_self_edit(
    text: str, *, title: str, context: str, style: str = "implications", truncated: bool = False
) -> ParsedSelfEdit:
    """Turn a self-edit into training sequences (title-prefixed items, then the passage).

    ``truncated`` says generation stopped at its token budget, so the last item is incomplete and is
    dropped. Raises :class:`SelfEditError` if a style that needs items yields none.
    """
    check_choice(style, SELF_EDIT_STYLES, "self-edit style", error=SelfEditError)
    split = SELF_EDIT_STYLES[style].split
    if style == "none":
        items, dropped = [], 0
    elif split == "qa":
        items, dropped = _qa_items(text, truncated)
    else:
        if split == "reasoning-then-lines":
            marker = text.lower().rfind("implications:")
            if marker < 0:
                raise SelfEditError("self-edit has no 'Implications:' section after its reasoning")
            text = text[marker + len("implications:") :]
        items, dropped = _line_items(text, truncated)
    if style != "none" and not items:
        raise SelfEditError(f"self-edit has no usable {'question-answer pairs' if split == 'qa' else 'lines'}")
    sequences = [f"{title}\n{item}" for item in items] + [f"{title}\n{context.strip()}"]
    return ParsedSelfEdit(sequences, len(items), dropped)


def _line_items(text: str, truncated: bool) -> tuple[list[str], int]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kept_lines = lines[:-1] if truncated else lines
    items = []
    for line in kept_lines:
        cleaned = _MARKDOWN_EMPHASIS.sub("", _LIST_MARKER.sub("", line)).strip()
        if _is_content(cleaned):
            items.append(cleaned)
    return items, len(lines) - len(items)


def _is_content(line: str) -> bool:
    """A line worth training on: at least three words and not a preamble such as 'Here are the facts:'."""
    return len(line.split()) >= 3 and not line.endswith(":") and set(line) != {"-"}


def _qa_items(text: str, truncated: bool) -> tuple[list[str], int]:
    text = text.strip()
    if not _QUESTION_START.match(text):
        text = "Question 1: " + text  # the prompt ended with "Question 1: ", so the model continued it
    starts = [m.start() for m in _QUESTION_START.finditer(text)] + [len(text)]
    pairs = [_MARKDOWN_EMPHASIS.sub("", text[a:b]).strip() for a, b in zip(starts, starts[1:])]
    kept_pairs = pairs[:-1] if truncated else pairs
    items = [p for p in kept_pairs if re.search(r"\bAnswer\s*:\s*\S", p, re.I)]
    return items, len(pairs) - len(items)
