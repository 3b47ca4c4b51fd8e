"""The update ledger: every model version and every update attempt, auditable and reversible.

A ledger is a folder::

    ledger/
      ledger.sqlite            versions, updates and events (SQLite in WAL mode)
      versions/<sha256>.safetensors   one file per version's weights, named by its SHA-256
      writer.lock              held by the one process that may write

A *version* is a set of weight tensors (the whole model, or only the tensors updates touch, or a
stack of adapters: the caller decides). An *update* is one attempt to change the model, accepted
(it made a new version) or not (rejected, retried, ...), with everything needed to audit it. An
*event* moves the ``current`` pointer: a commit or a rollback. The current version is the one named
by the latest event.

Crash safety. :meth:`Ledger.commit` first writes the weights to a temporary file, fsyncs it and
renames it to its hash; only then does one SQLite transaction insert the version, the update and the
commit event. A crash before that transaction commits leaves the previous version current and no
row pointing at a missing file; the weights file it leaves behind belongs to no version and is
deleted the next time the ledger is opened for writing. Weights files are never modified, so a
rollback restores bit-identical tensors (checked against the recorded hash on every load).

Concurrency. Any number of readers (``readonly=True``) may read while one writer writes (WAL). A
second writer is refused: the writer holds an exclusive ``flock`` on ``writer.lock`` for as long as
the ledger is open, released by the OS even if the process is killed (POSIX systems).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import sqlite3
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
from safetensors.torch import load_file, save_file

from seal_lm.runs.lock import LockHeld, take_writer_lock

logger = logging.getLogger(__name__)

DATABASE = "ledger.sqlite"
VERSIONS = "versions"
LOCK = "writer.lock"
SCHEMA_VERSION = 1

# The decision vocabulary. Only ACCEPTED and INITIAL (the first version, e.g. the base model) make a
# new version; every other decision is recorded with :meth:`Ledger.reject`.
INITIAL = "initial"
ACCEPTED = "accepted"
REJECTED = "rejected"
RETRY_WITH_REPLAY = "retry-with-replay"
COMMITTING = (INITIAL, ACCEPTED)

_ACCESS_HINT = (
    "check that the folder exists and is readable, and writable for commands that change it (adapt, rollback)"
)

SCHEMA = """
CREATE TABLE versions (
    id INTEGER PRIMARY KEY,
    parent INTEGER REFERENCES versions(id),
    weights_sha256 TEXT NOT NULL,
    n_tensors INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE updates (
    id INTEGER PRIMARY KEY,
    version INTEGER REFERENCES versions(id),
    parent INTEGER REFERENCES versions(id),
    recorded TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('commit', 'rollback')),
    version INTEGER NOT NULL REFERENCES versions(id),
    previous INTEGER REFERENCES versions(id),
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


class LedgerError(RuntimeError):
    """A ledger that cannot be opened, written or read as asked."""


@dataclass
class UpdateRecord:
    """What one update attempt did, as the caller knows it. Stored as JSON; every field is optional but ``decision``.

    Scores are per probe (1.0 right, 0.0 wrong, or a graded value), so the mean and any per-probe
    change can be recomputed from the ledger alone.
    """

    decision: str
    reason: str = ""
    document_id: str = ""  # the source document's content hash
    document_path: str = ""
    document_index: int | None = None  # the record's position in its file (see continual.stream)
    self_edit: str = ""
    probes: list[dict[str, Any]] = field(default_factory=list)  # [{"question", "answers"}]: the new document's probes
    scores_before: list[float] = field(default_factory=list)  # on ``probes``, before the update
    scores_after: list[float] = field(default_factory=list)
    retention_before: list[float] = field(default_factory=list)  # on the retention set (earlier documents' probes)
    retention_after: list[float] = field(default_factory=list)
    adapter_sha256: str | None = None  # the trained adapter's file, if the caller saved one
    started: str | None = None  # when the attempt began (ISO 8601); the ledger adds when it was recorded
    details: dict[str, Any] = field(default_factory=dict)  # anything else: settings, counts, timings


@dataclass(frozen=True)
class Update:
    """An update attempt as recorded: ``version`` is the version it made, or None if it made none."""

    id: int
    version: int | None
    parent: int | None  # the version that was current when the attempt was recorded
    recorded: str
    record: UpdateRecord


@dataclass(frozen=True)
class Version:
    """One model version: its weights file (verified by ``weights_sha256``) and the update that made it."""

    id: int
    parent: int | None
    weights_sha256: str
    file: Path
    n_tensors: int
    size_bytes: int
    created: str
    update: Update


@dataclass(frozen=True)
class Event:
    """A move of the ``current`` pointer: ``kind`` is ``commit`` or ``rollback``."""

    id: int
    kind: str
    version: int
    previous: int | None
    reason: str
    at: str


@dataclass(frozen=True)
class TensorChange:
    """How one tensor differs between two versions; the sizes are None unless both have it with one shape."""

    name: str
    status: str  # "changed" | "unchanged" | "added" | "removed" | "reshaped"
    max_abs: float | None
    l2: float | None


@dataclass(frozen=True)
class VersionDiff:
    """What changed from version ``a`` to ``b``, and every update attempted in between."""

    a: int
    b: int
    tensors: list[TensorChange]
    updates: list[Update]

    @property
    def changed(self) -> list[TensorChange]:
        return [t for t in self.tensors if t.status != "unchanged"]


class Ledger:
    """An open ledger folder. Use :meth:`open`; close it (or use ``with``) to release the writer lock."""

    def __init__(self, folder: Path, db: sqlite3.Connection, lock: TextIO | None):
        self.folder = folder
        self.readonly = lock is None
        self._db = db
        self._lock = lock

    @classmethod
    def open(cls, folder: str | Path, *, readonly: bool = False, timeout: float = 10.0) -> Ledger:
        """Open (creating if needed) the ledger in ``folder`` for writing, or an existing one ``readonly``.

        Opening for writing takes the writer lock (refused if another process holds it) and deletes
        weights files that no version refers to (left by a crash in the middle of a commit).
        """
        folder = Path(folder)
        database = folder / DATABASE
        try:
            return cls._open_readonly(folder, timeout) if readonly else cls._open_for_writing(folder, timeout)
        except (
            sqlite3.OperationalError
        ) as err:  # cannot open or write the file (permissions, a read-only place, locked)
            raise LedgerError(
                f"cannot open the ledger {database} for {'reading' if readonly else 'writing'} ({err}); {_ACCESS_HINT}"
            ) from None
        except sqlite3.DatabaseError as err:  # the bytes are not an SQLite database, or a damaged one
            raise LedgerError(
                f"{database} is not a ledger database or is damaged ({err}); restore it from a backup, or start a new --out."
            ) from None
        except OSError as err:
            raise LedgerError(
                f"cannot open the ledger in {folder} for {'reading' if readonly else 'writing'} ({err}); {_ACCESS_HINT}"
            ) from None

    @classmethod
    def _open_readonly(cls, folder: Path, timeout: float) -> Ledger:
        database = folder / DATABASE
        if not database.is_file():
            raise LedgerError(f"{folder}: no ledger here (missing {DATABASE}).")
        db = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout, isolation_level=None)
        ledger = cls(folder, db, None)
        try:
            ledger._check_schema()
        except BaseException:
            db.close()
            raise
        return ledger

    @classmethod
    def _open_for_writing(cls, folder: Path, timeout: float) -> Ledger:
        database = folder / DATABASE
        if folder.exists() and not folder.is_dir():
            raise LedgerError(f"{folder} is a file, not a ledger folder.")
        (folder / VERSIONS).mkdir(parents=True, exist_ok=True)
        try:
            lock = take_writer_lock(folder / LOCK)
        except LockHeld as held:
            raise LedgerError(
                f"{folder} is already open for writing by another process (pid {held.holder}); stop it, or open the ledger read-only."
            ) from None
        try:
            db = sqlite3.connect(database, timeout=timeout, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            ledger = cls(folder, db, lock)
            if db.execute("PRAGMA user_version").fetchone()[0] == 0:
                with ledger._transaction():
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            ledger._check_schema()
            ledger._remove_orphans()
        except BaseException:
            lock.close()
            raise
        return ledger

    def close(self) -> None:
        """Close the database and release the writer lock."""
        self._db.close()
        if self._lock is not None:
            self._lock.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------------

    def commit(self, weights: Mapping[str, torch.Tensor], record: UpdateRecord) -> int:
        """Save ``weights`` as a new version, record ``record`` as the update that made it, make it current.

        Returns the new version's id. The parent is the version current before the commit.
        """
        self._check_writable()
        if record.decision not in COMMITTING:
            raise LedgerError(
                f"commit needs decision {ACCEPTED!r} (or {INITIAL!r}), got {record.decision!r}; use reject() to record it."
            )
        if record.decision == INITIAL and self._count("versions"):
            raise LedgerError(f"decision {INITIAL!r} is only for the first version; this ledger already has versions.")
        payload = _record_json(record)  # a bad record fails here, before any file is written
        sha256, n_tensors, size = self._save_weights(weights)
        with self._transaction():
            parent = self._current_id()
            version = self._insert_version(sha256, parent, n_tensors, size)
            self._insert_update(payload, version, parent)
            self._insert_event("commit", version, parent, record.reason)
        return version

    def reject(self, record: UpdateRecord) -> int:
        """Record an update attempt that made no new version (rejected, retried, ...). Returns the update's id."""
        self._check_writable()
        if not record.decision or record.decision in COMMITTING:
            raise LedgerError(
                f"reject needs a decision other than {ACCEPTED!r} or {INITIAL!r} (e.g. {REJECTED!r}), got {record.decision!r}."
            )
        payload = _record_json(record)
        with self._transaction():
            return self._insert_update(payload, None, self._current_id())

    def rollback(self, version: int, reason: str = "") -> None:
        """Make an earlier ``version`` current again; later commits branch from it. Recorded as an event."""
        self._check_writable()
        problem = self.weights_problem(version)  # also raises for an unknown version
        if problem:
            raise LedgerError(
                f"cannot roll back to version {version}: {problem}; restore the file (it is named by its SHA-256) or roll back to another version."
            )
        with self._transaction():
            current = self._current_id()
            if current == version:
                raise LedgerError(f"version {version} is already current.")
            self._insert_event("rollback", version, current, reason)

    # -- reading --------------------------------------------------------------------------------

    def current(self) -> Version | None:
        """The current version, or None for an empty ledger."""
        current = self._current_id()
        return None if current is None else self.get(current)

    def get(self, version: int) -> Version:
        """One version by id."""
        row = self._db.execute("SELECT * FROM versions WHERE id = ?", (version,)).fetchone()
        if row is None:
            known = ", ".join(str(v.id) for v in self.versions()) or "none"
            raise LedgerError(f"no version {version} in {self.folder} (versions: {known}).")
        return self._version(row)

    def versions(self) -> list[Version]:
        """Every version, oldest first."""
        return [self._version(row) for row in self._db.execute("SELECT * FROM versions ORDER BY id")]

    def updates(self) -> list[Update]:
        """Every update attempt, accepted or not, in the order recorded."""
        return [_update(row) for row in self._db.execute("SELECT * FROM updates ORDER BY id")]

    def events(self) -> list[Event]:
        """Every move of the current pointer (commits and rollbacks), oldest first."""
        return [Event(*row) for row in self._db.execute("SELECT * FROM events ORDER BY id")]

    def decided_documents(self) -> set[str]:
        """Ids of documents whose update was finally decided (accepted or rejected): what a resumed stream skips."""
        rows = self._db.execute(
            "SELECT DISTINCT json_extract(record, '$.document_id') FROM updates "
            "WHERE json_extract(record, '$.decision') IN (?, ?) AND json_extract(record, '$.document_id') != ''",
            (ACCEPTED, REJECTED),
        )
        return {row[0] for row in rows}

    def load_weights(self, version: int | None = None) -> dict[str, torch.Tensor]:
        """The tensors of ``version`` (default: the current one), exactly as committed; the file's hash is checked."""
        if version is None:
            version = self._current_id()
            if version is None:
                raise LedgerError(f"{self.folder}: the ledger is empty; there are no weights to load.")
        problem = self.weights_problem(version)
        if problem:
            raise LedgerError(f"version {version}: {problem}; restore it or roll back to another version.")
        return load_file(self.get(version).file)

    def weights_problem(self, version: int) -> str:
        """Why ``version``'s weights cannot be loaded as committed (file missing, or not the recorded SHA-256); empty if they can."""
        entry = self.get(version)
        if not entry.file.is_file():
            return f"weights file {entry.file} is missing"
        actual = _sha256(entry.file)
        if actual != entry.weights_sha256:
            return (
                f"weights file {entry.file} is corrupt (SHA-256 {actual[:12]}…, recorded {entry.weights_sha256[:12]}…)"
            )
        return ""

    def diff(self, a: int, b: int) -> VersionDiff:
        """Per-tensor change from version ``a`` to ``b`` (max |b - a| and L2 norm of b - a), and the updates between.

        The updates are those recorded after the one that made the earlier version, up to and including
        the one that made the later version, whatever their decision.
        """
        first, second = self.get(a), self.get(b)
        old, new = self.load_weights(a), self.load_weights(b)
        tensors = [_tensor_change(name, old.get(name), new.get(name)) for name in sorted(old.keys() | new.keys())]
        low, high = sorted((first.update.id, second.update.id))
        rows = self._db.execute("SELECT * FROM updates WHERE id > ? AND id <= ? ORDER BY id", (low, high))
        return VersionDiff(a, b, tensors, [_update(row) for row in rows])

    # -- internals ------------------------------------------------------------------------------

    def _save_weights(self, weights: Mapping[str, torch.Tensor]) -> tuple[str, int, int]:
        """Write the weights durably under their hash; returns (sha256, tensor count, file size)."""
        if not weights:
            raise LedgerError("commit needs at least one weight tensor.")
        for name, tensor in weights.items():
            if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
                raise LedgerError(
                    f"weights must map tensor names to tensors; {name!r} maps to {type(tensor).__name__}."
                )
        tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in weights.items()}
        versions = self.folder / VERSIONS
        temporary = versions / f".tmp-{uuid.uuid4().hex}.safetensors"
        try:
            save_file(tensors, temporary)
            with open(temporary, "rb") as f:
                os.fsync(f.fileno())
            sha256 = _sha256(temporary)
            final = versions / f"{sha256}.safetensors"
            os.replace(temporary, final)
        except (RuntimeError, ValueError, OSError) as err:
            temporary.unlink(missing_ok=True)
            raise LedgerError(f"could not save the weights to {versions}: {err}") from err
        _fsync_directory(versions)
        return sha256, len(tensors), final.stat().st_size

    def _insert_version(self, sha256: str, parent: int | None, n_tensors: int, size: int) -> int:
        cursor = self._db.execute(
            "INSERT INTO versions (parent, weights_sha256, n_tensors, size_bytes, created) VALUES (?, ?, ?, ?, ?)",
            (parent, sha256, n_tensors, size, _now()),
        )
        return cursor.lastrowid

    def _insert_update(self, payload: str, version: int | None, parent: int | None) -> int:
        cursor = self._db.execute(
            "INSERT INTO updates (version, parent, recorded, record) VALUES (?, ?, ?, ?)",
            (version, parent, _now(), payload),
        )
        return cursor.lastrowid

    def _insert_event(self, kind: str, version: int, previous: int | None, reason: str) -> None:
        self._db.execute(
            "INSERT INTO events (kind, version, previous, reason, at) VALUES (?, ?, ?, ?, ?)",
            (kind, version, previous, reason, _now()),
        )

    def _current_id(self) -> int | None:
        row = self._db.execute("SELECT version FROM events ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else row[0]

    def _version(self, row: tuple) -> Version:
        id_, parent, sha256, n_tensors, size, created = row
        update = self._db.execute("SELECT * FROM updates WHERE version = ?", (id_,)).fetchone()
        file = self.folder / VERSIONS / f"{sha256}.safetensors"
        return Version(id_, parent, sha256, file, n_tensors, size, created, _update(update))

    def _count(self, table: str) -> int:
        return self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction: everything inside commits together or not at all."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _check_writable(self) -> None:
        if self.readonly:
            raise LedgerError(f"{self.folder} was opened read-only; open it without readonly=True to write.")

    def _check_schema(self) -> None:
        found = self._db.execute("PRAGMA user_version").fetchone()[0]
        if found != SCHEMA_VERSION:
            raise LedgerError(
                f"{self.folder}: ledger schema version {found}, this seal-lm reads version {SCHEMA_VERSION}."
            )

    def _remove_orphans(self) -> None:
        """Delete weights files no version refers to: leftovers of a commit interrupted before its transaction."""
        known = {row[0] for row in self._db.execute("SELECT weights_sha256 FROM versions")}
        for file in (self.folder / VERSIONS).iterdir():
            if file.name.startswith(".tmp-") or (file.suffix == ".safetensors" and file.stem not in known):
                logger.warning("removing %s: weights of an interrupted commit, never recorded as a version", file)
                file.unlink()


def _record_json(record: UpdateRecord) -> str:
    try:
        return json.dumps(asdict(record), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise LedgerError(
            f"the update record is not plain JSON data ({err}); convert tensors, NaN and objects first."
        ) from None


def _update(row: tuple) -> Update:
    id_, version, parent, recorded, payload = row
    return Update(id_, version, parent, recorded, UpdateRecord(**json.loads(payload)))


def _tensor_change(name: str, old: torch.Tensor | None, new: torch.Tensor | None) -> TensorChange:
    if old is None:
        return TensorChange(name, "added", None, None)
    if new is None:
        return TensorChange(name, "removed", None, None)
    if old.shape != new.shape:
        return TensorChange(name, "reshaped", None, None)
    difference = new.double() - old.double()
    max_abs = float(difference.abs().max()) if difference.numel() else 0.0
    l2 = float(difference.norm())
    changed = max_abs > 0 or old.dtype != new.dtype
    return TensorChange(name, "changed" if changed else "unchanged", max_abs, l2)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_directory(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
