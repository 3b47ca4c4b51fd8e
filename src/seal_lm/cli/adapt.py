"""``seal adapt``: learn documents from a stream, one verified update at a time, each a new model version.

Stopping is safe at any moment: Ctrl-C abandons the current document, SIGTERM finishes it first, and
even ``kill -9`` leaves the ledger at the last committed version (its commit is one transaction).
Re-running the same command continues after the last decided document.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from tqdm.auto import tqdm

from seal_lm.cli.continual_options import ContinualOptions
from seal_lm.cli.options import defaults, option, required
from seal_lm.cli.report import see_it
from seal_lm.continual.ledger import Ledger, UpdateRecord
from seal_lm.continual.stream import Document, StreamError, read_stream, stream_files
from seal_lm.domains.knowledge.data import DataError, short_id
from seal_lm.loops.continual import Outcome, learn_stream
from seal_lm.runs.rundir import RunDir, default_run_path

log = logging.getLogger(__name__)

STREAM_ERRORS = "stream_errors.jsonl"
LEDGER = "ledger"
# Settings that may differ between runs into one --out: where documents come from and how it waits for them.
UNCHECKED = ("out", "stream", "follow", "poll_interval")


@dataclass
class AdaptConfig(ContinualOptions):
    without_flags: ClassVar[tuple[str, ...]] = (*ContinualOptions.without_flags, "data")

    stream: str = required(
        "Documents to learn, in order: a file, a folder or a glob (SQuAD JSON, JSON list, JSONL, .txt/.md)."
    )
    follow: bool = option(False, "Keep watching --stream for new files and lines until stopped (Ctrl-C, SIGTERM).")
    poll_interval: float = option(2.0, "Seconds between looks for new documents with --follow.")


def adapt(config: AdaptConfig) -> Path:
    """Learn the stream's new documents into the run's ledger; returns the run directory."""
    settings = config.continual_settings()
    if not config.follow:
        check_stream(config.stream)
    with RunDir.open(
        config.out or default_run_path("adapt"), asdict(config) | {name: None for name in UNCHECKED}, defaults(config)
    ) as run:
        log.info("Run directory: %s", run.path)
        reported = {(error["location"], error["message"]) for error in run.records(STREAM_ERRORS)}
        counts: Counter[str] = Counter()
        stop = threading.Event()
        with Ledger.open(run.path / LEDGER) as ledger, _finish_then_stop_on_sigterm(stop):
            learner = config.open_learner(ledger, settings)
            print(f"Starting from version {ledger.current().id}; ledger: {ledger.folder}")
            # with --follow the stream has no end: the bar counts without one
            total = None if config.follow else new_documents(config.stream, ledger.decided_documents())
            with tqdm(desc="documents", unit="document", total=total) as progress:
                for item in learn_stream(
                    learner, config.stream, follow=config.follow, stop=stop, poll_interval=config.poll_interval
                ):
                    if isinstance(item, StreamError):
                        counts["unreadable"] += 1
                        progress.write(f"skipped {item}")
                        if (str(item.location), item.message) not in reported:
                            reported.add((str(item.location), item.message))
                            run.append(STREAM_ERRORS, {"location": str(item.location), "message": item.message})
                    else:
                        counts[item.record.decision] += 1
                        progress.update()
                        progress.write(describe(item))
            current = ledger.current().id
        print(
            f"Done: {', '.join(f'{n} {what}' for what, n in sorted(counts.items())) or 'no new documents'}; current version {current}."
        )
        if stop.is_set():
            print("Stopped by SIGTERM after the current document; re-run the same command to continue.")
        print(see_it(run.path))
        return run.path


def new_documents(source: str, decided: Iterable[str]) -> int:
    """How many documents of ``source`` are not ``decided`` yet (what a run without --follow will learn)."""
    return sum(isinstance(item, Document) for item in read_stream(source, seen=decided))


def check_stream(source: str) -> None:
    """Fail unless ``source`` holds at least one readable document (unreadable ones among readable ones are skipped later)."""
    if not stream_files(source):
        raise DataError(f"--stream {source}: no such file, or no files match. Pass a file, a folder or a glob pattern.")
    errors = []
    for item in read_stream(source):
        if isinstance(item, Document):
            return
        errors.append(item)
    reason = (
        f"{errors[0]}{f' (and {len(errors) - 1} more)' if len(errors) > 1 else ''}"
        if errors
        else "the files hold no documents"
    )
    raise DataError(f"--stream {source}: nothing to learn: {reason}.")


def describe(outcome: Outcome) -> str:
    """One line about a decided document."""
    record = outcome.record
    made = f" → version {outcome.version}" if outcome.version else ""
    parts = [f"{record.decision}{made}: {record.details['title']!r} ({location_text(record)})"]
    if record.scores_before:
        parts.append(
            f"probes {mean_text(record.scores_before)} → {mean_text(record.scores_after)} ({record.details['probe_source']})"
        )
    if record.retention_before:
        parts.append(f"retention {mean_text(record.retention_before)} → {mean_text(record.retention_after)}")
    if record.details["unfaithful_dropped"]:
        parts.append(f"{record.details['unfaithful_dropped']} unfaithful lines dropped")
    return f"{', '.join(parts)}; {record.reason}"


def location_text(record: UpdateRecord) -> str:
    """Where the record's document came from (file#record), or its id when it came from no file."""
    return f"{record.document_path}#{record.document_index}" if record.document_path else short_id(record.document_id)


def mean_text(scores: list[float]) -> str:
    """The mean of per-probe scores as text, or '-' for none."""
    return f"{sum(scores) / len(scores):.2f}" if scores else "-"


@contextlib.contextmanager
def _finish_then_stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """While inside: SIGTERM sets ``stop`` (the current document is finished, then the stream ends)."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
