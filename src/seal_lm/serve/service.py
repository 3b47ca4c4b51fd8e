"""What ``seal serve`` does, without HTTP: answer with a version, queue documents, show and undo versions.

Model ids: ``seal`` always means the current version (the alias), ``seal-vN`` exactly version N.
The current version is read from the ledger at each request, so it moves for every request at once,
when the learner's commit (or a rollback) ends, and never shows a half-updated model.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seal_lm.continual.ledger import Ledger, LedgerError, Update, Version
from seal_lm.model.completion import CompletionStream, CompletionWorker, Sampling, chat_prompt
from seal_lm.serve.documents import DocumentQueue, QueuedDocument
from seal_lm.serve.learner import BackgroundLearner
from seal_lm.serve.versions import ModelVersions

ALIAS = "seal"
VERSION_PREFIX = "seal-v"


class ServiceError(Exception):
    """A request the service cannot carry out: ``status`` is its HTTP status, ``param`` the field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_tokens: int = 512  # the most ``max_tokens`` a completion may ask for
    default_max_tokens: int = 256
    max_queue: int = 100  # documents waiting to be learned before new ones are refused (429)
    rollback_wait_seconds: float = 600.0  # a rollback waits for the document being learned


@dataclass(frozen=True)
class Access:
    """Who may call what. Without an ``api_key``, writes are refused unless ``open_writes`` (loopback only, checked at start)."""

    api_key: str | None = None
    open_writes: bool = False  # documents and rollbacks without a key
    open_reads: bool = False  # models, completions and listings without a key even when one is set
    max_body_bytes: int = 1_000_000


class Service:
    """The model versions of one run, its document queue and its learner."""

    def __init__(
        self,
        ledger_folder: Path,
        versions: ModelVersions,
        documents: DocumentQueue,
        learner: BackgroundLearner,
        completions: CompletionWorker,
        limits: Limits = Limits(),
    ):
        self.ledger_folder = ledger_folder
        self.versions = versions
        self.documents = documents
        self.learner = learner
        self.completions = completions
        self.limits = limits

    # -- models and completions ------------------------------------------------------------------

    def model_ids(self) -> list[tuple[str, Version]]:
        """(model id, version) for the alias (the current version) and every committed version."""
        with self._ledger() as ledger:
            versions, current = ledger.versions(), ledger.current()
        return [(ALIAS, current), *((model_id(v.id), v) for v in versions)]

    def resolve(self, model: str) -> int:
        """The version a model id names; a 404 listing the available ids for an unknown one."""
        with self._ledger() as ledger:
            if model == ALIAS:
                return ledger.current().id
            number = model.removeprefix(VERSION_PREFIX)
            known = [v.id for v in ledger.versions()]
        if model.startswith(VERSION_PREFIX) and number.isdigit() and int(number) in known:
            return int(number)
        available = [ALIAS, *(model_id(v) for v in known)]
        close = difflib.get_close_matches(model, available, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ServiceError(
            404,
            f"The model '{model}' does not exist.{hint} Available: {', '.join(available)}.",
            "model",
            "model_not_found",
        )

    def sampling(
        self, max_tokens: int | None, temperature: float, top_p: float, stop: Sequence[str], seed: int | None
    ) -> Sampling:
        """A request's sampling settings, within the limits."""
        if max_tokens is not None and max_tokens > self.limits.max_tokens:
            raise ServiceError(
                400, f"max_tokens is {max_tokens}; this server allows at most {self.limits.max_tokens}.", "max_tokens"
            )
        return Sampling(
            max_tokens or min(self.limits.default_max_tokens, self.limits.max_tokens),
            temperature,
            top_p,
            tuple(stop),
            seed,
        )

    def complete(self, version: int, prompt: str, sampling: Sampling) -> CompletionStream:
        """Start completing ``prompt`` with exactly ``version``."""
        return self.completions.submit(self.versions.model(version), self.versions.base.tokenizer, prompt, sampling)

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        """The conversation as one prompt: the model's chat template, or role-labelled lines for a model without one."""
        return chat_prompt(self.versions.base.tokenizer, self.versions.base.chat, messages)

    # -- documents -------------------------------------------------------------------------------

    def submit(self, title: str, text: str, questions: list[dict[str, Any]]) -> QueuedDocument:
        """Queue a document durably (429 when the queue is full) and wake the learner."""
        if not self.learner.alive:
            raise ServiceError(503, "The learner has stopped; see the server's log, then restart it.")
        waiting = self.documents.waiting()
        if waiting >= self.limits.max_queue:
            raise ServiceError(
                429, f"{waiting} documents are waiting to be learned (the limit); retry later.", code="queue_full"
            )
        document = self.documents.add(title, text, questions)
        self.learner.wake()
        return document

    def document(self, document_id: str) -> dict[str, Any]:
        """A document's status, and the ledger's record of its update once decided (probes, scores)."""
        document = self.documents.get(document_id)
        if document is None:
            raise ServiceError(
                404, f"No document '{document_id}'. Documents have ids like 'doc-1', as POST /v1/documents returned."
            )
        with self._ledger() as ledger:
            updates = [u for u in ledger.updates() if u.record.document_id == document.id]
        shown = asdict(document) | {
            "object": "document",
            "model": model_id(document.version) if document.version else None,
        }
        shown.pop("text")
        shown["characters"] = len(document.text)
        shown["update"] = update_summary(updates[-1]) if updates else None
        return shown

    # -- versions --------------------------------------------------------------------------------

    def version_list(self) -> dict[str, Any]:
        """Every version, oldest first, with the current one marked."""
        with self._ledger() as ledger:
            current = ledger.current().id
            return {
                "object": "list",
                "current": current,
                "data": [version_summary(v, current) for v in ledger.versions()],
            }

    def version(self, number: int) -> dict[str, Any]:
        """One version and why it exists: its parent, document, self-edit, probes and scores."""
        with self._ledger() as ledger:
            try:
                version = ledger.get(number)
            except LedgerError as err:
                raise ServiceError(404, str(err)) from None
            current = ledger.current().id
        record = version.update.record
        return version_summary(version, current) | {
            "document": {"id": record.document_id, "title": record.details.get("title"), "path": record.document_path},
            "update": update_summary(version.update) | {"self_edit": record.self_edit, "probes": record.probes},
            "weights_sha256": version.weights_sha256,
        }

    def rollback(self, number: int) -> dict[str, Any]:
        """Make ``number`` current (after the document being learned, if any)."""
        self.version(number)  # 404 for an unknown version
        done = self.learner.rollback(number, "rolled back through the API")
        try:
            previous = done.result(timeout=self.limits.rollback_wait_seconds)
        except TimeoutError:
            raise ServiceError(
                503, "The learner is still busy with a document; the rollback will happen after it."
            ) from None
        except LedgerError as err:
            raise ServiceError(409, str(err)) from None
        return {"object": "rollback", "current": number, "model": model_id(number), "previous": previous}

    def _ledger(self) -> Ledger:
        return Ledger.open(self.ledger_folder, readonly=True)


def model_id(version: int) -> str:
    """The model id that names exactly ``version``."""
    return f"{VERSION_PREFIX}{version}"


def version_summary(version: Version, current: int) -> dict[str, Any]:
    """A version in a listing."""
    record = version.update.record
    return {
        "id": version.id,
        "object": "version",
        "model": model_id(version.id),
        "parent": version.parent,
        "created": version.created,
        "current": version.id == current,
        "document_id": record.document_id or None,
        "title": record.details.get("title"),
        "reason": record.reason,
    }


def update_summary(update: Update) -> dict[str, Any]:
    """An update attempt's decision, probes' scores before and after, and retention scores."""
    record = update.record
    return {
        "id": update.id,
        "decision": record.decision,
        "reason": record.reason,
        "version": update.version,
        "parent": update.parent,
        "recorded": update.recorded,
        "probe_source": record.details.get("probe_source"),
        "questions": [p["question"] for p in record.probes],
        "scores_before": record.scores_before,
        "scores_after": record.scores_after,
        "retention_before": record.retention_before,
        "retention_after": record.retention_after,
        "gain": record.details.get("gain"),
        "retention_drop": record.details.get("retention_drop"),
        "seconds": record.details.get("seconds"),
    }
