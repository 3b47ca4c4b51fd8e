"""The server's durable queue of documents to learn (SQLite, beside the ledger).

A document is on disk before the server answers 202, and moves ``queued`` → ``learning`` →
``accepted`` | ``rejected`` | ``failed``. The ledger, not this queue, says what was learned: a
document found ``learning`` when the server starts (it was killed mid-document) takes the decision
the ledger recorded for it, or is queued again if there is none, so every accepted document is
learned exactly once.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QUEUED, LEARNING, ACCEPTED, REJECTED, FAILED = "queued", "learning", "accepted", "rejected", "failed"
ID_PREFIX = "doc-"

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    n INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    questions TEXT NOT NULL,
    status TEXT NOT NULL,
    submitted TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    version INTEGER,
    reason TEXT NOT NULL DEFAULT ''
)
"""


@dataclass(frozen=True)
class QueuedDocument:
    """A document as the queue holds it; ``id`` (``doc-N``) is also its id in the ledger."""

    id: str
    title: str
    text: str
    questions: list[dict[str, Any]] = field(default_factory=list)  # [{"question", "answers"}]
    status: str = QUEUED
    submitted: str = ""
    started: str | None = None
    finished: str | None = None
    version: int | None = None  # the version it made, if accepted
    reason: str = ""


class DocumentQueue:
    """The queue in ``path`` (created if missing). Safe to use from any thread: each call opens its own connection."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with self._connection() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)

    def add(self, title: str, text: str, questions: list[dict[str, Any]]) -> QueuedDocument:
        """Queue a document durably; returns it with its id."""
        with self._connection() as db:
            cursor = db.execute(
                "INSERT INTO documents (title, text, questions, status, submitted) VALUES (?, ?, ?, ?, ?)",
                (title, text, json.dumps(questions, ensure_ascii=False), QUEUED, _now()),
            )
            return self.get(f"{ID_PREFIX}{cursor.lastrowid}", db)

    def get(self, document_id: str, db: sqlite3.Connection | None = None) -> QueuedDocument | None:
        """The document with ``document_id``, or None."""
        number = document_id.removeprefix(ID_PREFIX)
        if not document_id.startswith(ID_PREFIX) or not number.isdigit():
            return None
        with self._connection(db) as db:
            row = db.execute("SELECT * FROM documents WHERE n = ?", (int(number),)).fetchone()
        return None if row is None else _document(row)

    def all(self) -> list[QueuedDocument]:
        """Every document, oldest first."""
        with self._connection() as db:
            return [_document(row) for row in db.execute("SELECT * FROM documents ORDER BY n")]

    def waiting(self) -> int:
        """How many documents are queued and not yet being learned."""
        with self._connection() as db:
            return db.execute("SELECT COUNT(*) FROM documents WHERE status = ?", (QUEUED,)).fetchone()[0]

    def start_next(self) -> QueuedDocument | None:
        """Mark the oldest queued document ``learning`` and return it (None: nothing queued)."""
        with self._connection() as db:
            row = db.execute("SELECT n FROM documents WHERE status = ? ORDER BY n LIMIT 1", (QUEUED,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE documents SET status = ?, started = ? WHERE n = ?", (LEARNING, _now(), row[0]))
            return self.get(f"{ID_PREFIX}{row[0]}", db)

    def finish(self, document_id: str, status: str, reason: str, version: int | None = None) -> None:
        """Record what became of a document."""
        with self._connection() as db:
            db.execute(
                "UPDATE documents SET status = ?, reason = ?, version = ?, finished = ? WHERE n = ?",
                (status, reason, version, _now(), int(document_id.removeprefix(ID_PREFIX))),
            )

    def interrupted(self) -> list[QueuedDocument]:
        """Documents left ``learning`` by a server that was stopped mid-document."""
        with self._connection() as db:
            return [
                _document(row) for row in db.execute("SELECT * FROM documents WHERE status = ? ORDER BY n", (LEARNING,))
            ]

    def requeue(self, document_id: str) -> None:
        """Put an interrupted document back in the queue (at its original place)."""
        with self._connection() as db:
            db.execute(
                "UPDATE documents SET status = ?, started = NULL WHERE n = ?",
                (QUEUED, int(document_id.removeprefix(ID_PREFIX))),
            )

    @contextmanager
    def _connection(self, db: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """``db`` if given, else a new connection committed and closed on leaving."""
        if db is not None:
            yield db
            return
        with closing(sqlite3.connect(self.path, timeout=30.0)) as db, db:
            yield db


def _document(row: tuple) -> QueuedDocument:
    n, title, text, questions, status, submitted, started, finished, version, reason = row
    return QueuedDocument(
        f"{ID_PREFIX}{n}", title, text, json.loads(questions), status, submitted, started, finished, version, reason
    )


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
