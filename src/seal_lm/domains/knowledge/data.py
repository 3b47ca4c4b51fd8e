"""Read SQuAD-style passages with their questions: one record parser and one id rule for every command.

Three file formats are accepted, detected from the file's contents:

- the official SQuAD v1.1 JSON: ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id",
  "question", "answers": [{"text"}, ...]}]}]}]}``, read as one record per paragraph in reading
  order (:func:`squad_records`);
- a JSON list of records (the format of SEAL's ``eval200.json``);
- JSONL with one record per line.

A record (:func:`passage_from_record`) is an object with ``text`` (or ``context``), an optional
``title`` and optional ``questions``: ``[{"question", "answer" | "answers", "id"?}]``, answers as
text, a list of texts or SQuAD's ``[{"text"}]``. ``seal adapt`` reads its stream's records with the
same parser (:mod:`seal_lm.continual.stream`).

Ids (:func:`make_passage`): a passage's id is the SHA-256 hex digest of its stripped text, so the
same passage has the same id in every file and format and in every command (``seal eval``,
``seal train`` and ``seal adapt``'s ledger). A question's id is its record's ``id`` if it has one,
else ``<first 12 characters of the passage id>-q<NN>``. An ``id`` field on a passage record is not
used. People see a passage id shortened by :func:`short_id`.

:func:`load_passages` reads a file to score: every passage needs at least one question, and a file
holding the same passage twice is refused. Every problem is reported as a :class:`DataError` naming
the file and the record (numbered from 0 in reading order).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from seal_lm.runs.rundir import RecordsFormat

SHORT_ID = 12  # characters of a passage id that people see, and that prefix its questions' ids
# The records of runs keyed by passage ids (eval knowledge, train knowledge, eval continual). Format 1
# had positional ids (p0000, a000-p00), last written by seal-lm at commit 8c32063.
PASSAGE_ID_RECORDS = RecordsFormat(version=2, changed="passage ids", last_commit="8c32063")


class DataError(ValueError):
    """A data file is missing, malformed, or has a record we cannot use."""


@dataclass(frozen=True)
class Question:
    """One question about a passage, with every accepted gold answer."""

    id: str
    question: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class Passage:
    """A passage (the context the model must learn) and the questions that probe it."""

    id: str
    title: str
    context: str
    questions: tuple[Question, ...] = field(default_factory=tuple)


def make_passage(title: str, text: str, questions: Iterable[tuple[str, tuple[str, ...], str | None]] = ()) -> Passage:
    """A passage with its ids, by the one id rule: the passage's is the SHA-256 of its stripped text;
    a question's (given as ``(question, answers, id or None)``) is its own, else ``<short id>-q<NN>``."""
    text = text.strip()
    passage_id = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Passage(
        passage_id,
        title.strip(),
        text,
        tuple(
            Question(given if given is not None else f"{short_id(passage_id)}-q{index:02d}", question, answers)
            for index, (question, answers, given) in enumerate(questions)
        ),
    )


def short_id(passage_id: str) -> str:
    """A passage id as people see it (tables, reports, progress lines): its first 12 characters."""
    return passage_id[:SHORT_ID]


def passage_from_record(record: object) -> Passage:
    """The passage a record describes (see the module docstring), or a :class:`DataError` saying what is
    wrong, relative to the record (the caller names the file and the record)."""
    if not isinstance(record, dict):
        raise DataError("expected an object with 'text' (or 'context'), optional 'title' and 'questions'.")
    text = record.get("text", record.get("context"))
    if not isinstance(text, str) or not text.strip():
        raise DataError("missing or empty 'text' (or 'context').")
    title = record.get("title") or ""
    if not isinstance(title, str):
        raise DataError(f"'title' must be text, got {type(title).__name__}.")
    raw = record.get("questions")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise DataError("'questions' must be a list of {question, answer} objects.")
    questions = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("question"), str) or not item["question"].strip():
            raise DataError(f"question {index}: expected an object with a non-empty 'question'.")
        answers = answer_texts(item.get("answers", item.get("answer")))
        if not answers:
            raise DataError(f"question {index}: missing gold answer ('answer' as text or 'answers' as a list).")
        questions.append((item["question"], answers, None if item.get("id") is None else str(item["id"])))
    return make_passage(title, text, questions)


def squad_records(articles: object) -> list[object]:
    """The official SQuAD v1.1 ``data`` list as records, one per paragraph in reading order.

    A paragraph that is not an object stays as it is (the record parser reports it); ``articles``
    that are not a list of ``{"paragraphs": [...]}`` objects are a :class:`DataError`.
    """
    if not isinstance(articles, list):
        raise DataError("'data' must be a list of articles, as in the official SQuAD v1.1 format.")
    records: list[object] = []
    for index, article in enumerate(articles):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DataError(f"data[{index}] is not an article with a 'paragraphs' list.")
        title = article.get("title", "")
        records += [
            {"title": title, "context": p.get("context"), "questions": p.get("qas")} if isinstance(p, dict) else p
            for p in paragraphs
        ]
    return records


def load_passages(path: str | Path) -> list[Passage]:
    """Read passages to score from an official SQuAD v1.1 JSON, a JSON list, or JSONL file."""
    path = Path(path)
    passages: list[Passage] = []
    first: dict[str, int] = {}  # passage id → the record that first held it
    for index, record in enumerate(_records(path)):
        try:
            passage = passage_from_record(record)
        except DataError as err:
            raise DataError(f"{path}: record {index}: {err}") from None
        if not passage.questions:
            raise DataError(
                f"{path}: record {index} ({passage.title!r}): has no questions; every passage needs at least one to be scored."
            )
        if passage.id in first:
            raise DataError(
                f"{path}: record {index} repeats the passage of record {first[passage.id]}; remove one of them."
            )
        first[passage.id] = index
        passages.append(passage)
    if not passages:
        raise DataError(f"{path}: contains no passages.")
    return passages


def _records(path: Path) -> list[object]:
    """The records of the file at ``path``, in reading order (SQuAD paragraphs flattened)."""
    if not path.is_file():
        raise DataError(f"{path}: no such file. Pass --data with a SQuAD v1.1 JSON, JSON list or JSONL file.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}). Save the file as UTF-8.") from None
    if path.suffix == ".jsonl":
        return _read_jsonl(path, text)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        if path.suffix != ".json":  # might still be JSONL under another name
            return _read_jsonl(path, text)
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}).") from None
    if isinstance(document, dict) and "data" in document:
        try:
            return squad_records(document["data"])
        except DataError as err:
            raise DataError(f"{path}: {err}") from None
    if not isinstance(document, list):
        raise DataError(
            f"{path}: expected a SQuAD v1.1 object with 'data' or a list of passages, got {type(document).__name__}."
        )
    return document


def _read_jsonl(path: Path, text: str) -> list:
    records = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {line_number} is not valid JSON ({err.msg}).") from None
    return records


def _required_text(record: dict, key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: missing or empty '{key}'.")
    return value


def answer_texts(answers: object) -> tuple[str, ...]:
    """Gold answers from text, a list of texts, or SQuAD's ``[{"text": ...}]``; empty when there are none."""
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list):
        return ()
    texts = (a.get("text") if isinstance(a, dict) else a for a in answers)
    return tuple(t for t in texts if isinstance(t, str) and t.strip())


def to_official_squad(passages: list[Passage]) -> dict:
    """The passages as an official SQuAD v1.1 dataset, so the official scorer can read them."""
    return {
        "version": "1.1",
        "data": [
            {
                "title": p.title,
                "paragraphs": [
                    {
                        "context": p.context,
                        "qas": [
                            {"id": q.id, "question": q.question, "answers": [{"text": a} for a in q.answers]}
                            for q in p.questions
                        ],
                    }
                ],
            }
            for p in passages
        ],
    }


def load_external_self_edits(path: str | Path) -> dict[str, list[str]]:
    """Self-edits written elsewhere (e.g. by GPT-4.1): passage text → its completions.

    The file is a JSON list (or JSONL) of ``{"title", "context", "completions": [str, ...]}``,
    the format of SEAL's ``self_edits_*.json``. Passages are matched by their context text.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file. Pass --external with a JSON list of {{context, completions}}.")
    text = path.read_text(encoding="utf-8")
    try:
        records = json.loads(text) if path.suffix != ".jsonl" else _read_jsonl(path, text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}).") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a list of {{context, completions}} records.")
    by_context = {}
    for index, record in enumerate(records):
        where = f"{path}: record {index}"
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected an object with 'context' and 'completions'.")
        context = _required_text(record, "context", where)
        completions = record.get("completions")
        if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions) or not completions:
            raise DataError(f"{where}: 'completions' must be a non-empty list of strings.")
        by_context[context.strip()] = completions
    return by_context
