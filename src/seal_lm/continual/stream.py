"""A stream of documents to learn from: files read in order, optionally followed as they grow.

``read_stream(source)`` takes a file, a folder (its files, not sub-folders) or a glob pattern
(``**`` recurses) and yields, file by file in name order and record by record in file order:

- a :class:`Document` for each readable document, or
- a :class:`StreamError` for each file or record that cannot be read, naming where and why.

The stream never raises for bad input and never drops it silently: a caller counts and records the
errors and goes on. Hidden files (``.name``) are skipped, so writers can write a temporary hidden
file and rename it into place.

File formats, by suffix:

- ``.json``: the official SQuAD v1.1 object (each paragraph is a document, its ``qas`` the gold
  questions), or a list of records;
- ``.jsonl``: one record per line;
- ``.txt``, ``.md``, ``.markdown``: the whole file is one document, titled by its first Markdown
  heading (``# Title``), else by the file name.

A record is an object with ``text`` (or ``context``), an optional ``title`` and optional
``questions``: ``[{"question", "answer" | "answers"}]``, answers as text, a list of texts or SQuAD's
``[{"text"}]``. Documents without questions are fine (the model writes its own probes).

A document's id is the SHA-256 of its text, so a document is yielded once however often it
appears. ``Location.index`` is the record's 0-based position in its file: the paragraph in reading
order for SQuAD, the list position for a JSON list, the line (blank lines included) for JSONL, 0
for a text file.

With ``follow=True`` the source is polled for new files, appended JSONL lines (only complete,
newline-terminated lines are read) and rewritten files, until ``stop`` is set. A consumer resumes
by passing the ids it has already processed as ``seen`` (e.g. ``Ledger.decided_documents()``).
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from seal_lm.domains.knowledge.data import DataError, Passage, Question, answer_texts

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
SUFFIXES = (".json", ".jsonl", *TEXT_SUFFIXES)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)

StopCondition = threading.Event | Callable[[], bool] | None


@dataclass(frozen=True)
class Location:
    """Where a document came from: its file, and its record's position there (None: the whole file)."""

    path: str
    index: int | None = None

    def __str__(self) -> str:
        return self.path if self.index is None else f"{self.path}#{self.index}"


@dataclass(frozen=True)
class Document:
    """One document of the stream, with its gold questions if it came with any."""

    id: str  # SHA-256 of ``text``
    text: str
    title: str
    location: Location
    questions: tuple[Question, ...] = ()

    def as_passage(self) -> Passage:
        """The document as a knowledge-domain passage (its id, title, text and gold questions)."""
        return Passage(self.id, self.title, self.text, self.questions)


@dataclass(frozen=True)
class StreamError:
    """A file or record the stream could not read; the stream goes on with the next one."""

    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


def read_stream(
    source: str | Path,
    *,
    follow: bool = False,
    stop: StopCondition = None,
    seen: Iterable[str] = (),
    poll_interval: float = 1.0,
) -> Iterator[Document | StreamError]:
    """Yield the documents (and unreadable records, as :class:`StreamError`) of ``source``, in order.

    ``seen``: document ids not to yield again (a resumed consumer's processed documents).
    ``follow``: keep polling every ``poll_interval`` seconds for more, until ``stop`` (an Event, or a
    callable returning True) is set. ``stop`` is also checked before each item, in either mode.
    Without ``follow``, a source that matches no file raises :class:`DataError`.
    """
    seen = set(seen)
    cursors: dict[Path, _Cursor] = {}
    if not follow and not stream_files(source):
        raise DataError(f"{source}: no such file, or no files match. Pass a file, a folder or a glob pattern.")
    while True:
        for path in stream_files(source):
            cursor = cursors.setdefault(path, _Cursor())
            for item in _read_new(path, cursor, final=not follow):
                if _is_set(stop):
                    return
                if isinstance(item, Document):
                    if item.id in seen:
                        continue
                    seen.add(item.id)
                yield item
        if not follow or _wait(stop, poll_interval):
            return


@dataclass
class _Cursor:
    """How far one file has been read: a JSONL file by byte offset, any other file by its last signature."""

    offset: int = 0
    next_index: int = 0
    signature: tuple[int, int] | None = None


def stream_files(source: str | Path) -> list[Path]:
    """The files ``source`` names now (a file, a folder's files, or a glob's matches), in name order, hidden ones left out."""
    text = str(source)
    if glob.has_magic(text):
        matches = (Path(m) for m in glob.glob(text, recursive=True))
    elif Path(text).is_dir():
        matches = Path(text).iterdir()
    else:
        matches = [Path(text)]
    return sorted(p for p in matches if p.is_file() and not p.name.startswith("."))


def _read_new(path: Path, cursor: _Cursor, final: bool) -> Iterator[Document | StreamError]:
    """What ``path`` holds beyond ``cursor``; advances the cursor."""
    try:
        stat = path.stat()
    except OSError as err:  # removed between listing and reading
        yield StreamError(Location(str(path)), f"cannot read the file ({err.strerror}).")
        return
    if path.suffix == ".jsonl":
        yield from _read_jsonl(path, cursor, final, stat.st_size)
        return
    signature = (stat.st_mtime_ns, stat.st_size)
    if signature == cursor.signature:
        return
    cursor.signature = signature
    location = Location(str(path))
    if path.suffix not in SUFFIXES:
        yield StreamError(
            location, f"unsupported file type {path.suffix or '(none)'!r}; expected one of {', '.join(SUFFIXES)}."
        )
        return
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        yield StreamError(location, f"not UTF-8 text (byte {err.start}); save the file as UTF-8.")
        return
    except OSError as err:
        yield StreamError(location, f"cannot read the file ({err.strerror}).")
        return
    if path.suffix == ".json":
        yield from _read_json(path, text)
    elif not text.strip():
        yield StreamError(Location(str(path), 0), "empty file.")
    else:
        heading = HEADING.search(text)
        yield _document(text, heading.group(1) if heading else path.stem, Location(str(path), 0))


def _read_jsonl(path: Path, cursor: _Cursor, final: bool, size: int) -> Iterator[Document | StreamError]:
    if size < cursor.offset:  # truncated or replaced: read it again from the start
        cursor.offset, cursor.next_index = 0, 0
    try:
        with open(path, "rb") as f:
            f.seek(cursor.offset)
            data = f.read()
    except OSError as err:
        yield StreamError(Location(str(path)), f"cannot read the file ({err.strerror}).")
        return
    complete = data if final else data[: data.rfind(b"\n") + 1]  # in follow mode a line counts once it ends
    cursor.offset += len(complete)
    for raw in complete.splitlines():
        location = Location(str(path), cursor.next_index)
        cursor.next_index += 1
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            yield StreamError(location, f"not UTF-8 text (byte {err.start} of the line).")
        except json.JSONDecodeError as err:
            yield StreamError(location, f"not valid JSON ({err.msg}, column {err.colno}).")
        else:
            yield _from_record(record, location)


def _read_json(path: Path, text: str) -> Iterator[Document | StreamError]:
    try:
        content = json.loads(text)
    except json.JSONDecodeError as err:
        yield StreamError(Location(str(path)), f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}).")
        return
    if isinstance(content, dict) and "data" in content:
        yield from _read_official_squad(path, content["data"])
    elif isinstance(content, list):
        for index, record in enumerate(content):
            yield _from_record(record, Location(str(path), index))
    else:
        yield StreamError(Location(str(path)), "expected a SQuAD v1.1 object with 'data' or a list of records.")


def _read_official_squad(path: Path, articles: object) -> Iterator[Document | StreamError]:
    if not isinstance(articles, list):
        yield StreamError(
            Location(str(path)), "'data' must be a list of articles, as in the official SQuAD v1.1 format."
        )
        return
    index = 0  # paragraphs in reading order
    for a_index, article in enumerate(articles):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            yield StreamError(
                Location(str(path), index), f"data[{a_index}] is not an article with a 'paragraphs' list."
            )
            continue
        for paragraph in paragraphs:
            record = {"title": article.get("title", ""), "context": None, "questions": None}
            if isinstance(paragraph, dict):
                record.update(context=paragraph.get("context"), questions=paragraph.get("qas"))
            yield _from_record(record, Location(str(path), index))
            index += 1


def _from_record(record: object, location: Location) -> Document | StreamError:
    try:
        if not isinstance(record, dict):
            raise DataError("expected an object with 'text' (or 'context'), optional 'title' and 'questions'.")
        text = record.get("text", record.get("context"))
        if not isinstance(text, str) or not text.strip():
            raise DataError("missing or empty 'text' (or 'context').")
        title = record.get("title") or ""
        if not isinstance(title, str):
            raise DataError(f"'title' must be text, got {type(title).__name__}.")
        document = _document(text, title, location)
        return _with_questions(document, record.get("questions"))
    except DataError as err:
        return StreamError(location, str(err))


def _with_questions(document: Document, raw: object) -> Document:
    if raw is None:
        return document
    if not isinstance(raw, list):
        raise DataError("'questions' must be a list of {question, answer} objects.")
    questions = []
    for q_index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("question"), str) or not item["question"].strip():
            raise DataError(f"question {q_index}: expected an object with a non-empty 'question'.")
        answers = answer_texts(item.get("answers", item.get("answer")))
        if not answers:
            raise DataError(f"question {q_index}: missing gold answer ('answer' as text or 'answers' as a list).")
        question_id = str(item.get("id", f"{document.id[:12]}-q{q_index:02d}"))
        questions.append(Question(question_id, item["question"], answers))
    return Document(document.id, document.text, document.title, document.location, tuple(questions))


def _document(text: str, title: str, location: Location) -> Document:
    text = text.strip()
    return Document(hashlib.sha256(text.encode("utf-8")).hexdigest(), text, title.strip(), location)


def _is_set(stop: StopCondition) -> bool:
    if stop is None:
        return False
    return stop.is_set() if isinstance(stop, threading.Event) else bool(stop())


def _wait(stop: StopCondition, seconds: float) -> bool:
    """Sleep up to ``seconds`` (waking early if an Event is set); True if the stream should stop."""
    if isinstance(stop, threading.Event):
        return stop.wait(seconds)
    time.sleep(seconds)
    return _is_set(stop)
