"""Run directories: the resolved config, append-only JSONL records, atomic files, and resume.

A run directory is created with the configuration that produced it (``config.json``). Re-opening it
with the same configuration resumes the run; a different configuration is refused, so a directory
never mixes results of two setups. Records are appended one JSON line at a time and flushed to
disk; a line torn by a kill is discarded on resume (its unit of work is redone), so no finished
record is lost and no half-written one is ever read.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

CONFIG_FILE = "config.json"
RECORDED_PACKAGES = ("seal-lm", "torch", "transformers", "peft", "numpy")


class RunDirError(RuntimeError):
    """A run directory that cannot be created or resumed as asked."""


class RunDir:
    """One run's directory on disk."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def open(cls, path: str | Path, config: dict[str, Any], defaults: dict[str, Any] | None = None) -> "RunDir":
        """Create ``path`` for ``config``, or resume it if it was made with the same config.

        ``defaults`` are the values of settings a run made by an earlier version may not record (added
        since): a saved config without such a setting resumes when the current value is its default.
        """
        path = Path(path)
        config_path = path / CONFIG_FILE
        if config_path.exists():
            try:
                saved = json.loads(config_path.read_text())["config"]
            except (json.JSONDecodeError, KeyError):
                raise RunDirError(f"{config_path} is corrupt; this is not a resumable run directory. Use a new --out.") from None
            differences = _differences(json.loads(json.dumps(defaults or {})) | saved, json.loads(json.dumps(config)))
            if differences:
                raise RunDirError(
                    f"{path} holds a run with a different configuration ({'; '.join(differences[:3])}). "
                    "Re-run with the same settings to resume it, or pass a new --out."
                )
            return cls(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path} is a file, not a run directory. Pass a new --out.")
        if path.exists() and any(path.iterdir()):
            raise RunDirError(f"{path} exists and is not a seal-lm run directory. Pass a new or empty --out.")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        run.write_json(CONFIG_FILE, {"config": config, "environment": environment()})
        return run

    def append(self, name: str, record: dict[str, Any]) -> None:
        """Append one record as a single JSON line, flushed to disk before returning."""
        line = json.dumps(record, ensure_ascii=False) + "\n"
        (self.path / name).parent.mkdir(parents=True, exist_ok=True)
        with open(self.path / name, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def records(self, name: str) -> list[dict[str, Any]]:
        """Every complete record in ``name``; a torn last line (from a kill) is dropped from the file."""
        file = self.path / name
        if not file.exists():
            return []
        raw = file.read_bytes()
        lines = raw.split(b"\n")
        complete, tail = lines[:-1], lines[-1]
        records = []
        for number, line in enumerate(complete, start=1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise RunDirError(f"{file}: line {number} is corrupt; the run cannot be resumed safely.") from None
        if tail:  # the last write was interrupted: drop it so the unit is redone
            with open(file, "r+b") as f:
                f.truncate(len(raw) - len(tail))
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
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
        return target

    def write_jsonl(self, name: str, rows: Iterable[dict[str, Any]]) -> Path:
        return self.write_text(name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


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


def _differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(saved) | set(current)):
            found += _differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return found
    return [] if saved == current else [f"{prefix.rstrip('.')}: {saved!r} → {current!r}"]
