"""The server's learner: one thread that learns queued documents into the ledger, one at a time.

It owns the ledger's writer connection and its own copy of the model (:meth:`ModelVersions.fresh_copy`),
so requests keep being answered from committed versions while it trains. A document is learned by
the same continual loop as ``seal adapt`` (:class:`~seal_lm.loops.continual.ContinualLearner`:
self-edit → train → verify → guard → commit); a new version exists for readers only once its commit
transaction has ended. Rollbacks run on this thread too, between two documents, so a version is never
built on weights that were rolled back under it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import torch

from seal_lm.continual.ledger import ACCEPTED, REJECTED, Ledger
from seal_lm.domains.knowledge.data import Passage, Question
from seal_lm.loops.continual import ContinualLearner
from seal_lm.serve.documents import ACCEPTED as DOC_ACCEPTED
from seal_lm.serve.documents import FAILED, DocumentQueue, QueuedDocument
from seal_lm.serve.documents import REJECTED as DOC_REJECTED

log = logging.getLogger(__name__)

OpenLearner = Callable[[Ledger], ContinualLearner]  # continue from the ledger's current version on a fresh model copy


@dataclass(frozen=True)
class _Rollback:
    version: int
    reason: str
    done: Future


class BackgroundLearner:
    """Learns the queue's documents on its own thread; :meth:`start` returns once the ledger is open."""

    def __init__(
        self,
        ledger_folder: Path,
        documents: DocumentQueue,
        open_learner: OpenLearner,
        threads: int = 1,
        poll_seconds: float = 1.0,
    ):
        self.ledger_folder = ledger_folder
        self.documents = documents
        self.open_learner = open_learner
        self.threads = threads
        self.poll_seconds = poll_seconds
        self.current_document: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ready: Future = Future()
        self._rollbacks: list[_Rollback] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="learner", daemon=True)

    def start(self) -> None:
        """Start the thread; raises what opening the ledger or the model raised (e.g. another writer holds it)."""
        self._thread.start()
        self._ready.result()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the current document (or at once when idle)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def wake(self) -> None:
        """A document was queued."""
        self._wake.set()

    def rollback(self, version: int, reason: str) -> Future:
        """Make ``version`` current after the document being learned (if any); the future ends with the previous version."""
        request = _Rollback(version, reason, Future())
        with self._lock:
            self._rollbacks.append(request)
        self._wake.set()
        return request.done

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        torch.set_num_threads(self.threads)  # per thread: the request handlers' threads are their own
        try:
            ledger = Ledger.open(self.ledger_folder)
        except BaseException as err:
            self._ready.set_exception(err)
            return
        with ledger:
            try:
                learner = self.open_learner(ledger)
                self._reconcile(ledger)
            except BaseException as err:
                self._ready.set_exception(err)
                return
            self._ready.set_result(None)
            while not self._stop.is_set():
                if self._do_rollbacks(ledger):
                    learner = self.open_learner(ledger)
                    continue
                document = self.documents.start_next()
                if document is None:
                    self._wake.wait(self.poll_seconds)
                    self._wake.clear()
                elif not self._learn(learner, document):
                    learner = self.open_learner(
                        ledger
                    )  # back to the current version's weights, whatever the failure left

    def _learn(self, learner: ContinualLearner, document: QueuedDocument) -> bool:
        """Learn one document and record what became of it; False if learning raised."""
        self.current_document = document.id
        log.info("learning %s (%r)", document.id, document.title)
        try:
            outcome = learner.learn(_passage(document))
        except Exception as err:  # one bad document must not stop the server
            log.exception("learning %s failed", document.id)
            self.documents.finish(document.id, FAILED, f"learning failed: {err}")
            return False
        else:
            status = DOC_ACCEPTED if outcome.version is not None else DOC_REJECTED
            self.documents.finish(document.id, status, outcome.record.reason, outcome.version)
            log.info(
                "%s %s%s: %s",
                document.id,
                status,
                f" → version {outcome.version}" if outcome.version else "",
                outcome.record.reason,
            )
            return True
        finally:
            self.current_document = None

    def _do_rollbacks(self, ledger: Ledger) -> bool:
        """Carry out the pending rollbacks; True if the current version moved."""
        with self._lock:
            pending, self._rollbacks = self._rollbacks, []
        moved = False
        for request in pending:
            try:
                previous = ledger.current().id
                ledger.rollback(request.version, request.reason)
            except Exception as err:
                request.done.set_exception(err)
            else:
                moved = True
                request.done.set_result(previous)
        return moved

    def _reconcile(self, ledger: Ledger) -> None:
        """Documents a killed server left ``learning``: the ledger's decision if it recorded one, else queued again."""
        decided = {}
        for update in ledger.updates():
            if update.record.decision in (ACCEPTED, REJECTED):
                decided[update.record.document_id] = update
        for document in self.documents.interrupted():
            update = decided.get(document.id)
            if update is None:
                log.info("%s was interrupted before its decision; queued again", document.id)
                self.documents.requeue(document.id)
            else:
                status = DOC_ACCEPTED if update.version is not None else DOC_REJECTED
                self.documents.finish(document.id, status, update.record.reason, update.version)


def _passage(document: QueuedDocument) -> Passage:
    """The document as the continual loop's passage (gold questions, if it came with any, are its probes)."""
    questions = tuple(
        Question(f"{document.id}-q{i}", q["question"], tuple(q["answers"])) for i, q in enumerate(document.questions)
    )
    return Passage(document.id, document.title, document.text, questions)
