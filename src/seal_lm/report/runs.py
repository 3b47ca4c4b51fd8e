"""Recognise a run directory and read its records, read-only (a report never writes into a run).

A run's kind comes from the settings its ``config.json`` records (each command records its own
config dataclass, so each kind has settings no other has). A ``seal serve`` run records no config:
it is recognised by its ``ledger/`` folder, and so is a bare ledger folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seal_lm.continual.ledger import DATABASE, Ledger, LedgerError
from seal_lm.runs.rundir import CONFIG_FILE, RunDirError, read_records

LEDGER_FOLDER = "ledger"

# (kind, the command that makes it, settings only its config records), tried in order
KINDS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("ledger", "seal adapt", frozenset({"stream"})),
    ("eval-continual", "seal eval continual", frozenset({"sequences", "guard"})),
    ("train", "seal train arc", frozenset({"rounds", "tasks"})),
    ("train", "seal train knowledge", frozenset({"rounds", "data"})),
    ("eval-arc", "seal eval arc", frozenset({"oracle_config"})),
    ("eval-knowledge", "seal eval knowledge", frozenset({"setting", "conditions"})),
)


@dataclass(frozen=True)
class Run:
    """One run directory as a report sees it."""

    label: str
    path: Path
    kind: str  # a section of the report: eval-knowledge, eval-arc, train, eval-continual, ledger
    command: str
    config: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)

    def records(self, name: str) -> list[dict[str, Any]]:
        """Every complete record of the JSONL file ``name`` (a torn last line, from a run still writing, is left out)."""
        try:
            return read_records(self.path / name)[0]
        except RunDirError as err:
            raise ValueError(str(err)) from None

    def json(self, name: str, required: bool = True) -> Any:
        """The JSON file ``name`` (None if it is missing and not ``required``)."""
        file = self.path / name
        if not file.is_file():
            if required:
                raise ValueError(
                    f"{self.path}: no {name} yet; the run has not finished (re-run its command to finish it)."
                )
            return None
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{file} is corrupt ({err}).") from None

    def ledger(self) -> Ledger:
        """The run's ledger, opened read-only."""
        folder = self.path if (self.path / DATABASE).is_file() else self.path / LEDGER_FOLDER
        try:
            return Ledger.open(folder, readonly=True)
        except LedgerError as err:
            raise ValueError(str(err)) from None


def open_run(path: str | Path, label: str = "") -> Run:
    """The run at ``path``, its kind recognised; a missing, foreign or corrupt directory is a ValueError."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{path}: no such run directory.")
    label = label or path.name
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        if (path / DATABASE).is_file() or (path / LEDGER_FOLDER / DATABASE).is_file():
            return Run(label, path, "ledger", "seal serve")
        raise ValueError(f"{path} is not a seal-lm run directory (no {CONFIG_FILE}, no {LEDGER_FOLDER}/{DATABASE}).")
    try:
        saved = json.loads(config_file.read_text(encoding="utf-8"))
        config, environment = saved["config"], saved.get("environment", {})
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise ValueError(f"{config_file} is corrupt; cannot tell what run this is.") from None
    for kind, command, settings in KINDS:
        if settings <= set(config):
            return Run(label, path, kind, command, config, environment)
    raise ValueError(f"{path}: {CONFIG_FILE} is not that of a run seal report knows (eval, train, adapt, serve).")
