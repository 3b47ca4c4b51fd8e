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
  questions; a ``data`` that is not a list of articles with ``paragraphs`` is one error for the
  file), or a list of records;
- ``.jsonl``: one record per line;
- ``.txt``, ``.md``, ``.markdown``: the whole file is one document, titled by its first Markdown
  heading (``# Title``), else by the file name.

Records are read by the knowledge domain's record parser and ids come from its id rule
(:mod:`seal_lm.domains.knowledge.data`), so a file gives the same passages, ids included, here as in
``seal eval``, and a bad record the same message. Documents without questions are fine here (the
model writes its own probes). A document's id is the SHA-256 of its stripped text, so a document is
yielded once however often it appears. ``Location.index`` is the record's 0-based position in its
file: the paragraph in reading order for SQuAD, the list position for a JSON list, the line (blank
lines included) for JSONL, 0 for a text file.

With ``follow=True`` the source is polled for new files, appended JSONL lines (only complete,
newline-terminated lines are read) and rewritten files, until ``stop`` is set. A consumer resumes
by passing the ids it has already processed as ``seen`` (e.g. ``Ledger.decided_documents()``).
"""

from __future__ import annotations

import glob
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from seal_lm.domains.knowledge.data import DataError, Passage, make_passage, passage_from_record, squad_records

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
    """One document of the stream: a passage (with its gold questions if it came with any) and where it came from."""

    passage: Passage
    location: Location

    @property
    def id(self) -> str:
        """The passage's id: the SHA-256 of its stripped text."""
        return self.passage.id


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
        yield Document(make_passage(heading.group(1) if heading else path.stem, text), Location(str(path), 0))


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
            yield _document(record, location)


def _read_json(path: Path, text: str) -> Iterator[Document | StreamError]:
    try:
        content = json.loads(text)
    except json.JSONDecodeError as err:
        yield StreamError(Location(str(path)), f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}).")
        return
    if isinstance(content, dict) and "data" in content:
        try:
            records = squad_records(content["data"])
        except DataError as err:
            yield StreamError(Location(str(path)), str(err))
            return
    elif isinstance(content, list):
        records = content
    else:
        yield StreamError(Location(str(path)), "expected a SQuAD v1.1 object with 'data' or a list of records.")
        return
    for index, record in enumerate(records):
        yield _document(record, Location(str(path), index))


def _document(record: object, location: Location) -> Document | StreamError:
    """The record's document, or the parser's complaint about it as a StreamError."""
    try:
        return Document(passage_from_record(record), location)
    except DataError as err:
        return StreamError(location, str(err))


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
