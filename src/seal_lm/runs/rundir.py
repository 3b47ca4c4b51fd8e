"""Run directories: the resolved config, append-only JSONL records, atomic files, and resume.

A run directory is created with the configuration that produced it (``config.json``). Re-opening it
with the same configuration resumes the run; a different configuration is refused, so a directory
never mixes results of two setups. Nor does it mix two meanings of its records: a run kind whose
records changed meaning (e.g. the ids they are keyed by) passes its :class:`RecordsFormat`, written
into ``config.json`` as ``records_format``, and a run written in another format is refused.

Records are appended one JSON line at a time and flushed to disk; a line torn by a kill is
discarded on resume (its unit of work is redone), so no finished record is lost and no half-written
one is ever read.

One process writes a run: an open run holds the directory's writer lock (:mod:`seal_lm.runs.lock`).
Whole files and folders are written atomically (a partial copy beside the target, then a rename);
the partial copies a kill leaves behind are removed when the run is opened again. A full disk is a
one-line :class:`RunDirError` that says what to do.
"""

from __future__ import annotations

import datetime as dt
import errno
import glob
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from seal_lm.runs.lock import LockHeld, take_writer_lock

CONFIG_FILE = "config.json"
LOCK_FILE = "writer.lock"
PARTIAL = ".partial"  # an atomic write in progress is ".<name>.<random>.partial" beside <name>, renamed to <name> when complete
RECORDED_PACKAGES = ("seal-lm", "torch", "transformers", "peft", "numpy")

log = logging.getLogger(__name__)


class RunDirError(RuntimeError):
    """A run directory that cannot be created or resumed as asked."""


@dataclass(frozen=True)
class RecordsFormat:
    """The version of what a run kind's records mean; a run directory without one was written in version 1."""

    version: int
    changed: str  # what differs from the version before, e.g. "passage ids"
    last_commit: str  # the last seal-lm commit that wrote the version before


class RunDir:
    """One run's directory on disk; opened with :meth:`open`, it holds the run's writer lock until :meth:`close`."""

    def __init__(self, path: Path, lock: TextIO | None = None):
        self.path = path
        self._lock = lock

    @classmethod
    def open(
        cls,
        path: str | Path,
        config: dict[str, Any],
        defaults: dict[str, Any] | None = None,
        records_format: RecordsFormat | None = None,
    ) -> RunDir:
        """Create ``path`` for ``config``, or resume it if it was made with the same config.

        The returned run holds the directory's writer lock (a second opener is refused, told the
        holder's pid) until it is closed; use it in a ``with`` block. Leftovers of writes a kill
        interrupted are removed; a directory holding nothing else (a creation killed before its
        config was written) is started afresh. ``defaults`` are the values of settings a run made by
        an earlier version may not record (added since): a saved config without such a setting
        resumes when the current value is its default. ``records_format``: the version of the records
        this run kind writes; a run written in another version is refused (a run without one is version 1).
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path} is a file, not a run directory. Pass a new --out.")
        if (
            path.exists()
            and not (path / CONFIG_FILE).exists()
            and not all(_is_leftover(p.name) for p in path.iterdir())
        ):
            raise RunDirError(f"{path} exists and is not a seal-lm run directory. Pass a new or empty --out.")
        path.mkdir(parents=True, exist_ok=True)
        try:
            run = cls(path, take_writer_lock(path / LOCK_FILE))
        except LockHeld as held:
            raise RunDirError(
                f"{path} is open for writing by another process (pid {held.holder}); let it finish or stop it, or pass a new --out."
            ) from None
        try:
            run._remove_leftovers()
            run._create_or_check(config, defaults, records_format)
        except BaseException:
            run.close()
            raise
        return run

    def close(self) -> None:
        """Release the writer lock (the OS releases it too when the process ends)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create_or_check(
        self, config: dict[str, Any], defaults: dict[str, Any] | None, records_format: RecordsFormat | None
    ) -> None:
        config_path = self.path / CONFIG_FILE
        if not config_path.exists():
            written = {"records_format": records_format.version} if records_format else {}
            self.write_json(CONFIG_FILE, {"config": config, **written, "environment": environment()})
            return
        try:
            recorded = json.loads(config_path.read_text())
            saved = recorded["config"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise RunDirError(
                f"{config_path} is corrupt; this is not a resumable run directory. Use a new --out."
            ) from None
        if records_format is not None:
            _check_records_format(self.path, recorded.get("records_format", 1), records_format)
        differences = _differences(json.loads(json.dumps(defaults or {})) | saved, json.loads(json.dumps(config)))
        if differences:
            raise RunDirError(
                f"{self.path} holds a run with a different configuration ({'; '.join(differences[:3])}). "
                "Re-run with the same settings to resume it, or pass a new --out."
            )

    def _remove_leftovers(self) -> None:
        """Delete the partial files and folders of writes interrupted by a kill, anywhere in the run."""
        for folder, subfolders, files in os.walk(self.path):
            for name in [n for n in subfolders + files if _is_partial(n)]:
                _remove_partial(Path(folder) / name)
                if name in subfolders:
                    subfolders.remove(name)

    def append(self, name: str, record: dict[str, Any]) -> None:
        """Append one record as a single JSON line, flushed to disk before returning."""
        line = json.dumps(record, ensure_ascii=False) + "\n"
        (self.path / name).parent.mkdir(parents=True, exist_ok=True)
        with _reporting_full_disk(self.path / name), open(self.path / name, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def records(self, name: str) -> list[dict[str, Any]]:
        """Every complete record in ``name``; a torn last line (from a kill) is dropped from the file."""
        file = self.path / name
        records, torn = read_records(file)
        if torn:  # the last write was interrupted: drop it so the unit is redone
            with open(file, "r+b") as f:
                f.truncate(file.stat().st_size - torn)
        return records

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_text(name, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")

    def write_text(self, name: str, text: str) -> Path:
        """Write a whole text file atomically (temporary file, then rename)."""
        return self.write_bytes(name, text.encode("utf-8"))

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Write a whole file atomically (temporary file, then rename)."""
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with _reporting_full_disk(target):
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=PARTIAL)
            try:
                with os.fdopen(handle, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        return target

    def write_jsonl(self, name: str, rows: Iterable[dict[str, Any]]) -> Path:
        return self.write_text(name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    def write_folder(self, name: str, save: Callable[[Path], None]) -> Path:
        """Write a whole folder atomically: ``save`` fills a staging folder, then it is renamed to ``name`` (which must not exist)."""
        return write_folder(self.path / name, save)


def read_records(file: Path) -> tuple[list[dict[str, Any]], int]:
    """Every complete record of the JSONL ``file`` (none if it is missing), and the byte length of a torn last line; only reads."""
    if not file.exists():
        return [], 0
    *complete, tail = file.read_bytes().split(b"\n")
    records = []
    for number, line in enumerate(complete, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise RunDirError(f"{file}: line {number} is corrupt; the run cannot be resumed safely.") from None
    return records, len(tail)


def write_folder(target: Path, save: Callable[[Path], None]) -> Path:
    """Write the folder ``target`` atomically: ``save(staging)`` fills a staging folder beside it, which is then renamed.

    A kill leaves at most a ``.<name>.<random>.partial`` folder, which a resumed run removes.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with _reporting_full_disk(target):
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=PARTIAL, dir=target.parent))
        try:
            save(staging)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def default_run_path(command: str, root: str | Path = "runs") -> Path:
    """``runs/<command>-<UTC timestamp>``."""
    return Path(root) / f"{command}-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%d-%H%M%S')}"


def environment() -> dict[str, Any]:
    """Library versions, the git commit of the source tree, and the machine, for the record."""
    versions = {}
    for package in RECORDED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def remove_partial_writes(target: Path) -> None:
    """Delete the partial copies of ``target`` that writes a kill interrupted left beside it; only its one writer may call this."""
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*{PARTIAL}"):
        _remove_partial(leftover)


def _remove_partial(leftover: Path) -> None:
    log.info("Removing %s, left by an interrupted write", leftover)
    if leftover.is_dir():
        shutil.rmtree(leftover)
    else:
        leftover.unlink()


def _is_partial(name: str) -> bool:
    """Whether ``name`` is this module's name for an atomic write in progress."""
    return name.startswith(".") and name.endswith(PARTIAL)


def _is_leftover(name: str) -> bool:
    """Whether a file may be left in a run directory by a creation killed before its config was written."""
    return name == LOCK_FILE or _is_partial(name)


@contextmanager
def _reporting_full_disk(path: Path) -> Iterator[None]:
    """A full disk while writing ``path`` becomes a one-line RunDirError saying how to go on."""
    try:
        yield
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise RunDirError(
            f"no space left on device writing {path}; free space and re-run the same command to resume."
        ) from None


def _check_records_format(path: Path, written: object, current: RecordsFormat) -> None:
    """Refuse a run whose records were ``written`` in a format other than ``current``."""
    if written == current.version:
        return
    if isinstance(written, int) and written < current.version:
        raise RunDirError(
            f"{path} was written by an earlier seal-lm whose {current.changed} differ (records format {written}); "
            f"start a new --out, or resume it with seal-lm at commit {current.last_commit}."
        )
    raise RunDirError(
        f"{path} was written by a later seal-lm (records format {written!r}, this one writes {current.version}); "
        "start a new --out, or resume it with that seal-lm."
    )


def _differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(saved) | set(current)):
            found += _differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return found
    return [] if saved == current else [f"{prefix.rstrip('.')}: {saved!r} → {current!r}"]
