"""Load SQuAD-style passages with their questions.

Three input formats are accepted, detected from the file's contents:

- the official SQuAD v1.1 JSON: ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id",
  "question", "answers": [{"text"}, ...]}]}]}]}``;
- a flattened JSON list: ``[{"title", "context", "questions": [{"question", "answer"}]}]`` where
  ``answer`` is a string or a list of strings (the format of SEAL's ``eval200.json``);
- JSONL with one flattened record per line.

Every problem is reported as a :class:`DataError` naming the file and the record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


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


def load_passages(path: str | Path) -> list[Passage]:
    """Read passages from an official SQuAD v1.1 JSON, a flattened JSON list, or JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file. Pass --data with a SQuAD v1.1 JSON, JSON list or JSONL file.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}). Save the file as UTF-8.") from None
    if path.suffix == ".jsonl":
        records = _read_jsonl(path, text)
    else:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as err:
            if path.suffix != ".json":  # might still be JSONL under another name
                return _passages_from_flat(path, _read_jsonl(path, text))
            raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}).") from None
        if isinstance(document, dict) and "data" in document:
            return _passages_from_official(path, document["data"])
        if not isinstance(document, list):
            raise DataError(
                f"{path}: expected a SQuAD v1.1 object with 'data' or a list of passages, got {type(document).__name__}."
            )
        records = document
    return _passages_from_flat(path, records)


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


def _passages_from_flat(path: Path, records: list) -> list[Passage]:
    passages = []
    for index, record in enumerate(records):
        where = f"{path}: record {index}"
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected an object with title, context and questions.")
        title, context = _required_text(record, "title", where), _required_text(record, "context", where)
        raw_questions = record.get("questions")
        if not isinstance(raw_questions, list) or not raw_questions:
            raise DataError(f"{where} ({title!r}): has no questions; every passage needs at least one to be scored.")
        passage_id = str(record.get("id", f"p{index:04d}"))
        questions = []
        for q_index, raw in enumerate(raw_questions):
            q_where = f"{where}, question {q_index}"
            if not isinstance(raw, dict):
                raise DataError(f"{q_where}: expected an object with 'question' and 'answer'.")
            answers = raw.get("answers", raw.get("answer"))
            questions.append(
                Question(
                    id=str(raw.get("id", f"{passage_id}-q{q_index:02d}")),
                    question=_required_text(raw, "question", q_where),
                    answers=_answer_texts(answers, q_where),
                )
            )
        passages.append(Passage(passage_id, title, context, tuple(questions)))
    if not passages:
        raise DataError(f"{path}: contains no passages.")
    return passages


def _passages_from_official(path: Path, articles: object) -> list[Passage]:
    passages = []
    for a_index, article in enumerate(_objects(articles, f"{path}: data")):
        title = article.get("title", "")
        for p_index, paragraph in enumerate(
            _objects(article.get("paragraphs", []), f"{path}: data[{a_index}].paragraphs")
        ):
            where = f"{path}: data[{a_index}].paragraphs[{p_index}]"
            context = _required_text(paragraph, "context", where)
            qas = _objects(paragraph.get("qas") or [], f"{where}.qas")
            if not qas:
                raise DataError(
                    f"{where} ({title!r}): has no questions; every passage needs at least one to be scored."
                )
            questions = tuple(
                Question(
                    id=str(qa.get("id", f"a{a_index}-p{p_index}-q{q_index}")),
                    question=_required_text(qa, "question", f"{where}.qas[{q_index}]"),
                    answers=_answer_texts(qa.get("answers"), f"{where}.qas[{q_index}]"),
                )
                for q_index, qa in enumerate(qas)
            )
            passages.append(Passage(f"a{a_index:03d}-p{p_index:02d}", title, context, questions))
    if not passages:
        raise DataError(f"{path}: the SQuAD 'data' list contains no paragraphs.")
    return passages


def _objects(value: object, where: str) -> list[dict]:
    """``value`` checked to be a list of JSON objects."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise DataError(f"{where}: expected a list of objects, as in the official SQuAD v1.1 format.")
    return value


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


def _answer_texts(answers: object, where: str) -> tuple[str, ...]:
    """The gold answers (:func:`answer_texts`); a :class:`DataError` when there are none."""
    texts = answer_texts(answers)
    if not texts:
        raise DataError(f"{where}: missing gold answer (expected 'answer' as text or 'answers' as a list).")
    return texts


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
