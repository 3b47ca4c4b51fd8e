"""``seal ledger list|show|diff|export`` and ``seal rollback``: read the update ledger of a ``seal adapt`` run, and move back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from seal_lm.cli.adapt import LEDGER, location_text, mean_text
from seal_lm.cli.options import option, positional, required
from seal_lm.continual.ledger import DATABASE, Ledger, Update
from seal_lm.continual.versions import BASE_FINGERPRINT, export_version, ledger_setup


@dataclass
class LedgerOptions:
    run: str = required("The folder seal adapt wrote (its --out), or a ledger folder.")

    def open_ledger(self, readonly: bool = True) -> Ledger:
        """The run's ledger (read-only unless asked)."""
        folder = Path(self.run)
        if not (folder / DATABASE).is_file() and (folder / LEDGER / DATABASE).is_file():
            folder = folder / LEDGER
        return Ledger.open(folder, readonly=readonly)


@dataclass
class LedgerListConfig(LedgerOptions):
    pass


@dataclass
class LedgerShowConfig(LedgerOptions):
    version: int = positional("The version to show.")


@dataclass
class LedgerDiffConfig(LedgerOptions):
    a: int = positional("The first version.")
    b: int = positional("The second version.")
    top: int = option(10, "Show the most changed tensors, at most this many.")


@dataclass
class LedgerExportConfig(LedgerOptions):
    to: str = required("New folder to write the model into, in Hugging Face format (--model accepts it).")
    version: int = option(0, "The version to export (0: the current one).")


@dataclass
class RollbackConfig(LedgerOptions):
    version: int = positional("The version to make current again.")
    reason: str = option("", "Why, for the record.")


def ledger_list(config: LedgerListConfig) -> None:
    """Every update attempt, one line each, and every rollback."""
    with config.open_ledger() as ledger:
        current = ledger.current()
        broken = {
            version.id: problem for version in ledger.versions() if (problem := ledger.weights_problem(version.id))
        }
        print(
            f"{'update':>6} {'version':>7}  {'decision':<17} {'probes':<12} {'retention':<12} {'dropped':>7}  document"
        )
        for update in ledger.updates():
            record = update.record
            marker = "*" if current and update.version == current.id else " "
            version = f"{'!' if update.version in broken else ''}{update.version}{marker}" if update.version else "-"
            probes = _change(record.scores_before, record.scores_after)
            retention = _change(record.retention_before, record.retention_after)
            print(
                f"{update.id:>6} {version:>7}  {record.decision:<17} {probes:<12} {retention:<12} "
                f"{record.details.get('unfaithful_dropped', 0):>7}  {_document(update)}"
            )
        for event in ledger.events():
            if event.kind == "rollback":
                print(
                    f"rollback at {event.at}: version {event.previous} → {event.version}{f' ({event.reason})' if event.reason else ''}"
                )
        for version, problem in broken.items():
            print(f"version {version} is broken (! above): {problem}; it cannot be restored or rolled back to.")
        print(f"current version: {current.id if current else 'none'} (* above)")


def ledger_show(config: LedgerShowConfig) -> None:
    """One version: its weights file and everything recorded about the update that made it."""
    with config.open_ledger() as ledger:
        version = ledger.get(config.version)
        current = ledger.current()
        update, record = version.update, version.update.record
        print(
            f"version {version.id}{' (current)' if current and current.id == version.id else ''}, parent {version.parent or '-'}, created {version.created}"
        )
        print(
            f"weights: {version.file} ({version.n_tensors} tensors, {version.size_bytes / 2**20:.1f} MiB, sha256 {version.weights_sha256})"
        )
        problem = ledger.weights_problem(version.id)
        if problem:
            print(f"BROKEN: {problem}; this version cannot be restored or rolled back to.")
        print(f"update {update.id}: {record.decision} ({record.reason})")
        print(f"document: {_document(update)}; sha256 {record.document_id or '-'}")
        print(
            f"started {record.started or '-'}, recorded {update.recorded}; adapter sha256 {record.adapter_sha256 or '-'}"
        )
        if record.self_edit:
            print("self-edit:\n" + "\n".join(f"  {line}" for line in record.self_edit.splitlines()))
        if record.probes:
            print(f"probes ({record.details.get('probe_source')}), score before → after:")
            for probe, before, after in zip(record.probes, record.scores_before, record.scores_after):
                print(f"  {before:.0f} → {after:.0f}  {probe['question']}  [{' | '.join(probe['answers'])}]")
        if record.retention_before:
            documents = len(record.details.get("retention_documents", []))
            print(
                f"retention: {mean_text(record.retention_before)} → {mean_text(record.retention_after)} over {len(record.retention_before)} probes of {documents} earlier documents"
            )
        for line in record.details.get("unfaithful", []):
            print(f"unfaithful line dropped: {line['line']!r} ({line['reason']})")
        shown = {"title", "unfaithful", "retention_documents", "probe_source"}
        print(
            "details: "
            + json.dumps({k: v for k, v in record.details.items() if k not in shown}, ensure_ascii=False, indent=1)
        )


def ledger_diff(config: LedgerDiffConfig) -> None:
    """Which tensors changed from version a to b, by how much, and the updates in between."""
    with config.open_ledger() as ledger:
        diff = ledger.diff(config.a, config.b)
        tensors = [t for t in diff.tensors if t.name != BASE_FINGERPRINT]
        changed = sorted((t for t in tensors if t.status != "unchanged"), key=lambda t: -(t.l2 or 0.0))
        print(f"version {diff.a} → {diff.b}: {len(changed)} of {len(tensors)} stored tensors differ")
        for tensor in changed[: config.top]:
            size = f"max |Δ| {tensor.max_abs:.3g}, L2 {tensor.l2:.3g}" if tensor.l2 is not None else ""
            print(f"  {tensor.status:<9} {tensor.name}  {size}")
        if len(changed) > config.top:
            print(f"  ... and {len(changed) - config.top} more (--top)")
        if ledger_setup(ledger)["commit"] == "stack":
            print("(stack ledger: a version stores only its own adapter, so this compares adapters, not whole models)")
        print(f"updates between: {len(diff.updates)}")
        for update in diff.updates:
            print(
                f"  update {update.id}: {update.record.decision}{f' → version {update.version}' if update.version else ''}, {_document(update)}"
            )


def ledger_export(config: LedgerExportConfig) -> Path:
    """Write a version as a Hugging Face model folder."""
    with config.open_ledger() as ledger:
        version = config.version or ledger.current().id
        target = export_version(ledger, version, config.to)
    print(f"Version {version} written to {target} (use it with --model {target}).")
    return target


def rollback(config: RollbackConfig) -> None:
    """Make an earlier version current again: the next seal adapt continues from its exact weights."""
    with config.open_ledger(readonly=False) as ledger:
        previous = ledger.current()
        ledger.rollback(config.version, config.reason)
    print(
        f"Version {config.version} is current again (was {previous.id if previous else 'none'}). Re-run seal adapt with the same "
        f"--out to continue from it, or write it out with: seal ledger export --run {config.run} --to FOLDER"
    )


def _change(before: list[float], after: list[float]) -> str:
    return f"{mean_text(before)}→{mean_text(after)}" if before else "-"


def _document(update: Update) -> str:
    record = update.record
    if not record.document_id:
        return "(base model)" if record.decision == "initial" else "-"
    return f"{record.details.get('title', '')!r} {location_text(record)}"
