"""Label-free probes: questions and reference answers the model writes about a document it is shown.

A document that comes without questions can still be checked after an update: before learning it,
the model reads the document (in its prompt) and writes question/answer pairs about it; after the
update those questions are asked *without* the document, like gold questions. :func:`parse_probes`
turns the model's text into probes and keeps only the usable ones:

- pairs are found by their markers, ``Question N:`` / ``Answer:`` (or ``Q:`` / ``A:`` at the start
  of a line), on one line or several, numbered or in Markdown emphasis; text before the first
  question is a preamble and ignored;
- a question without an answer, an answer without a question, an empty part, or the last pair of a
  generation cut at its token budget is *malformed*: dropped and counted;
- a well-formed pair is kept only if its answer is *supported*: the normalised answer (SQuAD
  normalisation: lower case, no punctuation or articles) occurs in the normalised document as whole
  words; it has at most ``max_answer_words`` words; the question does not already contain it; and
  the question was not asked before. Each dropped pair keeps its reason.

A small model may write few usable pairs (measured in BENCHMARKS.md: SmolLM2-135M kept a probe for
1 passage of 12). :func:`cloze_probes` needs no model: fill-in-the-blank questions made from the
document's own sentences, a name or number blanked out. They test recall of the document's wording
rather than understanding, so they are a weaker, but always available, label-free check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from seal_lm.continual.guards import NOT_NAMES
from seal_lm.domains.knowledge.data import Question
from seal_lm.domains.knowledge.grading import contains_answer, normalize_answer
from seal_lm.model.prompting import PromptFormatter, PromptTemplate

PROBE_PROMPT = PromptTemplate(
    plain=(
        "Let's read the following passage and write {count} questions that it answers, each followed by its short "
        "answer copied from the passage.\n\nPassage:\n{title}\n{context}\n\nQuestion 1:"
    ),
    user=(
        "Write {count} questions about the passage below. Each answer must be a short phrase copied from the "
        "passage. Use this format:\nQuestion 1: ...\nAnswer: ...\n\nPassage:\n{title}\n{context}"
    ),
    response_prefix="Question 1:",
)

# "Question 3:", "**Answer**:", and at the start of a line "Q:", "2. A:" (but not "A." or "a:" inside a sentence).
_MARKER = re.compile(
    r"(?P<word>\b(?P<word_kind>question|answer)\s*\d*\s*[*_]*\s*:)"
    r"|(?P<letter>(?:^|(?<=\n))[ \t]*(?:\d{1,3}[.)][ \t]*)?[*_]*(?P<letter_kind>[qa])\s*\d*[*_]*\s*:)",
    re.IGNORECASE,
)
_EMPHASIS = re.compile(r"\*+|`+|(?<!\w)__|__(?!\w)")
_LIST_MARKER = re.compile(r"^\s*(?:\d{1,3}[.)]|[-*•])\s+")


@dataclass(frozen=True)
class DroppedProbe:
    question: str
    answer: str
    reason: str


@dataclass(frozen=True)
class WrittenProbes:
    """The probes kept from one generation, and what was not kept."""

    probes: tuple[Question, ...]
    malformed: int  # parts that did not form a question/answer pair
    dropped: tuple[DroppedProbe, ...]  # well-formed pairs that failed a check, with the reason

    def summary(self) -> dict[str, int]:
        """Counts for a record: kept, malformed, dropped."""
        return {"kept": len(self.probes), "malformed": self.malformed, "dropped": len(self.dropped)}


def probe_prompt(formatter: PromptFormatter, title: str, document: str, count: int) -> str:
    """The prompt that asks the model for ``count`` question/answer pairs about ``document`` (shown in the prompt)."""
    return formatter(PROBE_PROMPT, title=title, context=document, count=str(count))


def parse_probes(
    text: str,
    document: str,
    *,
    title: str = "",
    id_prefix: str = "probe",
    max_probes: int | None = None,
    max_answer_words: int = 8,
    truncated: bool = False,
    opens_with_question: bool = True,
) -> WrittenProbes:
    """The supported question/answer pairs of ``text`` as :class:`Question` objects (ids ``{id_prefix}-m00``, ...).

    ``truncated``: the generation stopped at its token budget, so its last pair is incomplete and dropped.
    ``max_probes`` keeps the first that many supported pairs. ``opens_with_question``: the prompt ended
    with ``Question 1:`` (as :data:`PROBE_PROMPT` does), so text before the first marker is that question;
    otherwise it is a preamble and ignored.
    """
    pairs, malformed = _pairs(text, opens_with_question)
    if truncated and pairs:
        pairs, malformed = pairs[:-1], malformed + 1
    source = f"{title}\n{document}"
    kept: list[Question] = []
    dropped: list[DroppedProbe] = []
    asked: set[str] = set()
    for question, answer in pairs:
        reason = _unusable(question, answer, source, asked, max_answer_words)
        if reason is None and max_probes is not None and len(kept) >= max_probes:
            reason = f"more than {max_probes} probes"
        if reason:
            dropped.append(DroppedProbe(question, answer, reason))
            continue
        asked.add(normalize_answer(question))
        kept.append(Question(f"{id_prefix}-m{len(kept):02d}", question, (answer,)))
    return WrittenProbes(tuple(kept), malformed, tuple(dropped))


def _pairs(text: str, opens_with_question: bool) -> tuple[list[tuple[str, str]], int]:
    """(question, answer) pairs in order, and how many parts did not pair up."""
    matches = list(_MARKER.finditer(text))
    parts = []  # (kind "q" or "a", the text after the marker up to the next one)
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        parts.append(((match.group("word_kind") or match.group("letter_kind"))[0].lower(), text[match.end() : end]))
    leading = text[: matches[0].start()] if matches else text
    if opens_with_question and leading.strip():
        parts.insert(0, ("q", leading))
    pairs, malformed, question = [], 0, None
    for kind, raw in parts:
        if kind == "q":
            if question is not None:
                malformed += 1  # the previous question got no answer
            question = _clean_question(raw)
        elif question is None:
            malformed += 1  # an answer without a question
        else:
            answer = _clean_answer(raw)
            if question and answer:
                pairs.append((question, answer))
            else:
                malformed += 1
            question = None
    if question is not None:
        malformed += 1
    return pairs, malformed


def _clean_question(raw: str) -> str:
    lines = [_LIST_MARKER.sub("", line).strip() for line in _EMPHASIS.sub("", raw).splitlines()]
    return " ".join(line for line in lines if line)


def _clean_answer(raw: str) -> str:
    """The answer's first non-empty line, without emphasis, list markers or a final full stop."""
    lines = [line.strip() for line in _EMPHASIS.sub("", raw).splitlines() if line.strip()]
    return lines[0].rstrip(".").strip() if lines else ""


def _unusable(question: str, answer: str, source: str, asked: set[str], max_answer_words: int) -> str | None:
    """Why a well-formed pair cannot be a probe, or None if it can."""
    if not contains_answer(source, answer):
        return "answer not in the document"
    if len(answer.split()) > max_answer_words:
        return f"answer longer than {max_answer_words} words"
    if contains_answer(question, answer):
        return "the question contains its answer"
    if normalize_answer(question) in asked:
        return "duplicate question"
    return None


# Sentences end at . ! or ? followed by space and a capital letter, digit or quote.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'“])")
# Numbers (1,548 or 3.5 or 1889), and runs of capitalised words joined by of/the/de/and (Kublai Khan, Bank of England).
_CAPITAL = "A-ZÀ-ÖØ-Þ"
_BLANKABLE = re.compile(rf"\d+(?:[.,]\d+)*|[{_CAPITAL}][\w'’-]*(?:\s+(?:(?:of|the|de|and)\s+)?[{_CAPITAL}][\w'’-]*)*")
BLANK = "____"


def cloze_probes(
    document: str, *, title: str = "", count: int = 5, id_prefix: str = "probe", max_sentence_words: int = 40
) -> tuple[Question, ...]:
    """Up to ``count`` fill-in-the-blank probes from ``document``'s sentences, spread over the document.

    Each probe is a sentence with one span blanked: its last number, else its longest capitalised name
    that does not open the sentence, is not a common word and is not the title; the span is the answer.
    Sentences without such a span, or longer than ``max_sentence_words``, are skipped.
    """
    candidates = []
    for sentence in _SENTENCE_BREAK.split(" ".join(document.split())):
        if len(sentence.split()) > max_sentence_words:
            continue
        spans = [m for m in _BLANKABLE.finditer(sentence) if m.start() > 0 and _blankable(m.group(0), title)]
        numbers = [m for m in spans if m.group(0)[0].isdigit()]
        if spans:
            chosen = numbers[-1] if numbers else max(reversed(spans), key=lambda m: len(m.group(0)))
            question = f"Fill in the blank: {sentence[: chosen.start()]}{BLANK}{sentence[chosen.end() :]}"
            candidates.append((question, chosen.group(0)))
    if len(candidates) > count:  # evenly spaced over the document
        candidates = (
            [candidates[round(i * (len(candidates) - 1) / (count - 1))] for i in range(count)]
            if count > 1
            else candidates[:1]
        )
    return tuple(
        Question(f"{id_prefix}-c{i:02d}", question, (answer,)) for i, (question, answer) in enumerate(candidates)
    )


def _blankable(span: str, title: str) -> bool:
    """A span worth asking for: a number, or a name that is not a common word and not the document's title."""
    if span[0].isdigit():
        return True
    return span.lower() not in NOT_NAMES and normalize_answer(span) != normalize_answer(title)
