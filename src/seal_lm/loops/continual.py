"""Continual self-adaptation: learn documents one at a time, each update verified and committed to a ledger.

For each document, :meth:`ContinualLearner.learn`:

1. finds its *probes*: the gold questions it came with, question/answer pairs the model writes with
   the document in its prompt, or fill-in-the-blank questions made from the document's sentences
   (:mod:`seal_lm.continual.probes`), as ``ContinualSettings.probe_source`` says;
2. answers them, and the *retention set* (the probes of earlier documents kept in the replay buffer),
   with the current model and without the document: the scores before;
3. writes ``k`` self-edits with the knowledge domain's prompt (an unusable one falls back to the
   document alone; lines the document does not support are dropped if asked), trains a fresh LoRA
   adapter on each and answers the same probes: the scores after. The candidate with the best
   retention-aware reward (gain minus weighted retention drop) is the update;
4. decides by the :class:`~seal_lm.continual.guards.RetentionPolicy`: accept, reject, or retry once
   with the training sequences of earlier documents from the replay buffer mixed in;
5. merges an accepted adapter into the model and commits the new version to the ledger. Every attempt,
   accepted or not, is recorded there with its probes, scores, self-edit and training sequences.

The ledger is the learner's whole state. Its first version records the base model and how versions
are stored, ``merge`` or ``stack`` (:mod:`seal_lm.continual.versions`).

:meth:`ContinualLearner.open` restores the current version bit for bit, and rebuilds the replay
buffer from the accepted updates that led to it, so a killed run resumes exactly and a rollback
takes the retention set back with the weights. The model is the same in both modes: each accepted
adapter is merged into the running model, the stack is a way of storing it.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from seal_lm.adapt.lora import CandidateResult, InnerLoop, TrainExample, TrainPlan
from seal_lm.choices import check_choice
from seal_lm.continual.guards import (
    DroppedLine,
    ReplayBuffer,
    ReplayEntry,
    RetentionPolicy,
    UpdateDecision,
    check_faithfulness,
    decide_update,
    retention_aware_reward,
)
from seal_lm.continual.ledger import ACCEPTED, INITIAL, REJECTED, RETRY_WITH_REPLAY, Ledger, LedgerError, UpdateRecord
from seal_lm.continual.probes import WrittenProbes, cloze_probes, parse_probes, probe_prompt
from seal_lm.continual.stream import Location, StopCondition, StreamError, read_stream
from seal_lm.continual.versions import (
    COMMIT_MODES,
    adapted_weights,
    initial_weights,
    ledger_setup,
    lineage,
    restore,
    tensors_sha256,
)
from seal_lm.domains.base import SelfEditRejected
from seal_lm.domains.knowledge.data import Passage, Question, short_id
from seal_lm.domains.knowledge.domain import KnowledgeDomain
from seal_lm.loops.self_edits import reseeded, sample_self_edits
from seal_lm.model.generation import Generation, GenerationSettings, seed_for

log = logging.getLogger(__name__)

PROBE_SOURCES = ("auto", "gold", "model", "cloze")
Scores = tuple[list[float], list[float]]  # per-probe scores on the new document, and on the retention set


@dataclass(frozen=True)
class ContinualSettings:
    """How documents are learned, checked and committed (the inner loop's settings are the domain's)."""

    commit: str = "merge"  # what a version stores: "merge" or "stack" (see the module docstring)
    k: int = 1  # self-edits per document, each a candidate update
    retention_weight: float = 1.0  # candidate reward: gain - retention_weight × retention drop
    policy: RetentionPolicy = RetentionPolicy()
    verify: bool = True  # False: accept every update without probes (the paper's naive sequential merging)
    probe_source: str = (
        "auto"  # "auto" (gold questions if any, else model-written filled up with cloze), "gold", "model", "cloze"
    )
    probe_count: int = 5
    probe_generation: GenerationSettings = GenerationSettings(max_new_tokens=256)
    self_edit_generation: GenerationSettings = GenerationSettings(max_new_tokens=320, temperature=0.7, top_p=0.95)
    drop_unfaithful: bool = False
    replay_capacity: int = 16
    replay_strategy: str = "reservoir"
    replay_mix: int = 4  # earlier documents whose training sequences a retried update also trains on
    seed: int = 0  # the replay buffer's and the replay mix's (sampling takes each generation setting's own seed)

    def __post_init__(self):
        check_choice(self.commit, COMMIT_MODES, "commit mode")
        check_choice(self.probe_source, PROBE_SOURCES, "probe source")
        for name in ("k", "probe_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if self.replay_mix < 0 or self.retention_weight < 0:
            raise ValueError("--replay-mix and --retention-weight must be zero or positive.")
        if not self.verify and self.k > 1:
            raise ValueError("choosing among --k candidates needs verification (probe scores).")


@dataclass(frozen=True)
class Candidate:
    """One self-edit and the plan it became."""

    self_edit: Generation
    rejected: str | None  # why the self-edit was unusable (the plan is then the document alone)
    unfaithful: tuple[DroppedLine, ...]  # sequences dropped by the faithfulness check
    plan: TrainPlan


@dataclass(frozen=True)
class Outcome:
    """What became of one document: its final ledger record, and the version it made (None: rejected)."""

    record: UpdateRecord
    version: int | None


class ContinualLearner:
    """A model that learns documents one at a time, every attempt recorded in a :class:`Ledger`. Use :meth:`open`."""

    def __init__(
        self,
        ledger: Ledger,
        inner_loop: InnerLoop,
        domain: KnowledgeDomain,
        settings: ContinualSettings,
        replay: ReplayBuffer,
    ):
        self.ledger = ledger
        self.inner_loop = inner_loop
        self.domain = domain
        self.settings = settings
        self.replay = replay

    @classmethod
    def open(
        cls,
        ledger: Ledger,
        inner_loop: InnerLoop,
        domain: KnowledgeDomain,
        settings: ContinualSettings,
        model_spec: str,
    ) -> ContinualLearner:
        """Continue from the ledger's current version, or start an empty ledger with the model as its first version.

        ``inner_loop`` wraps the freshly loaded base model (``model_spec``); its weights become the current version's.
        """
        targets = domain.settings.inner_loop.target_modules
        current = ledger.current()
        if current is None:
            model = inner_loop.base_model
            setup = {
                "model": model_spec,
                "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
                "commit": settings.commit,
                "inner_loop": asdict(domain.settings.inner_loop),
            }
            ledger.commit(
                initial_weights(model, targets, settings.commit),
                UpdateRecord(INITIAL, reason="the base model", details=setup),
            )
            ancestry = []
        else:
            setup = ledger_setup(ledger)
            if setup["commit"] != settings.commit:
                raise LedgerError(
                    f"{ledger.folder} stores '{setup['commit']}' versions; re-run with --commit {setup['commit']}."
                )
            if tuple(setup["inner_loop"]["target_modules"]) != tuple(targets):
                adapted = ",".join(setup["inner_loop"]["target_modules"])
                raise LedgerError(f"{ledger.folder} adapts {adapted}; re-run with --target-modules {adapted}.")
            restore(ledger, current.id, inner_loop)
            ancestry = lineage(ledger, current.id)[1:]
        replay = ReplayBuffer(settings.replay_capacity, settings.replay_strategy, settings.seed)
        for version in ancestry:
            replay.add(_replay_entry(version.update.record))
        return cls(ledger, inner_loop, domain, settings, replay)

    # -- learning -------------------------------------------------------------------------------

    def learn(self, document: Passage, location: Location | None = None) -> Outcome:
        """Write self-edits for ``document``, train, verify, decide, and record (and commit) the update."""
        started, clock = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
        _phase(document, "finding probes")
        probes, probe_notes = self._probes(document)
        retained = [entry for entry in self.replay.entries if entry.probes] if self.settings.verify else []
        checked = [replace(document, questions=probes), *(entry.as_passage() for entry in retained)]
        prompts = [prompt for passage in checked for prompt in self.domain.probe_prompts(passage)]
        generation = self.domain.answer_generation
        _phase(
            document,
            f"answering {len(probes)} probes and {len(prompts) - len(probes)} retention probes before the update",
        )
        before = _split(self._scores(checked, self.inner_loop.generate_with_base(prompts, generation)))

        _phase(document, f"writing {self.settings.k} self-edit{'s' if self.settings.k > 1 else ''}")
        candidates = self._candidates(document)
        _phase(
            document,
            f"training {len(candidates)} candidate adapter{'s' if len(candidates) > 1 else ''} and answering the probes again",
        )
        results = self.inner_loop.train_and_answer([c.plan for c in candidates], prompts, generation)
        afters = [_split(self._scores(checked, result.answers)) for result in results]
        rewards = [self._reward(before, after) for after in afters] if len(candidates) > 1 else [None]
        # A candidate whose training diverged is chosen only when all did; ties: the first.
        best = (
            max(range(len(candidates)), key=lambda i: (not results[i].stats.stopped, rewards[i]))
            if len(candidates) > 1
            else 0
        )
        candidate, result, after = candidates[best], results[best], afters[best]
        decision = self._decide(before, after, result)
        details = {
            **probe_notes,
            "retention_documents": [entry.document_id for entry in retained],
            "candidates": len(candidates),
            "chosen": best,
            "rewards": rewards,
        }
        if decision.verdict == RETRY_WITH_REPLAY:
            attempt = self._record(
                decision, document, location, probes, before, after, candidate, result, started, clock, details
            )
            details["retry_of"] = self.ledger.reject(attempt)
            plan, details["replayed_documents"] = self._with_replay(candidate.plan, document)
            _phase(
                document,
                f"retention dropped: retrying with {len(details['replayed_documents'])} earlier documents replayed",
            )
            result = self.inner_loop.train_and_answer([plan], prompts, generation)[0]
            after = _split(self._scores(checked, result.answers))
            decision = self._decide(before, after, result, retried=True)
        else:
            plan = candidate.plan
        record = self._record(
            decision, document, location, probes, before, after, candidate, result, started, clock, details
        )
        if decision.verdict != ACCEPTED:
            self.ledger.reject(record)
            self.inner_loop.release()  # the model stays the current version, as a plain module
            return Outcome(record, None)
        _phase(document, "merging the update and committing it to the ledger")
        self.inner_loop.load_adapter(result.adapter_state, plan.settings)
        model = self.inner_loop.merge_adapter()
        targets = self.domain.settings.inner_loop.target_modules
        weights = result.adapter_state if self.settings.commit == "stack" else adapted_weights(model, targets)
        version = self.ledger.commit(weights, record)
        self.replay.add(_replay_entry(record))
        return Outcome(record, version)

    def accuracies(self, passages: Sequence[Passage]) -> list[float]:
        """The current model's share of correct answers to each passage's questions (closed book)."""
        prompts = [prompt for passage in passages for prompt in self.domain.probe_prompts(passage)]
        answers = self.inner_loop.generate_with_base(prompts, self.domain.answer_generation)
        return [sum(scores) / len(scores) if scores else 0.0 for scores in self._scores(passages, answers)]

    def _probes(self, document: Passage) -> tuple[tuple[Question, ...], dict[str, Any]]:
        """The document's probes and notes for the record: gold questions or model-written ones."""
        source = self.settings.probe_source
        if not self.settings.verify:
            return (), {"probe_source": None}
        if source == "gold" or (source == "auto" and document.questions):
            return document.questions, {"probe_source": "gold"}
        count = self.settings.probe_count
        if source == "cloze":
            return cloze_probes(document.context, title=document.title, count=count, id_prefix=short_id(document.id)), {
                "probe_source": "cloze"
            }
        generation = self.settings.probe_generation.seeded_for(document.id)
        written, text = write_probes(self.inner_loop, self.domain, document, count, generation)
        probes = written.probes
        if (
            source == "auto" and len(probes) < count
        ):  # the model's own probes first, fill-in-the-blank ones for the rest
            probes += cloze_probes(
                document.context, title=document.title, count=count, id_prefix=short_id(document.id)
            )[: count - len(probes)]
        notes = {
            "probe_source": "model"
            if source == "model"
            else f"model ({len(written.probes)}) + cloze ({len(probes) - len(written.probes)})",
            "probe_text": text.text,
            "probe_counts": written.summary(),
            "probes_dropped": [asdict(d) for d in written.dropped],
        }
        return probes, notes

    def _candidates(self, document: Passage) -> list[Candidate]:
        """``k`` self-edits sampled in one batched generation, each parsed into a plan with its own seed."""
        _, edits = sample_self_edits(
            self.inner_loop, self.domain, document, self.settings.k, self.settings.self_edit_generation
        )
        candidates = []
        for index, edit in enumerate(
            edits
        ):  # the "none" style writes nothing: its empty self-edits parse to the document alone
            rejected = None
            try:
                plan = self.domain.parse_self_edit(document, edit.text, edit.truncated)
            except SelfEditRejected as reason:
                plan, rejected = self.domain.context_plan(document), str(reason)
            unfaithful: tuple[DroppedLine, ...] = ()
            if self.settings.drop_unfaithful:
                plan, unfaithful = drop_unfaithful(plan, document)
            candidates.append(Candidate(edit, rejected, unfaithful, reseeded(plan, index)))
        return candidates

    def _with_replay(self, plan: TrainPlan, document: Passage) -> tuple[TrainPlan, list[str]]:
        """``plan`` plus the training sequences of up to ``replay_mix`` earlier documents (a seeded sample)."""
        entries = list(self.replay.entries)
        chosen = random.Random(seed_for(self.settings.seed, document.id)).sample(
            entries, min(self.settings.replay_mix, len(entries))
        )
        replayed = tuple(TrainExample(text) for entry in chosen for text in entry.train_texts)
        return replace(plan, examples=plan.examples + replayed), [entry.document_id for entry in chosen]

    def _scores(self, passages: Sequence[Passage], answers: Sequence[Generation]) -> list[list[float]]:
        """Per passage, 1.0 or 0.0 per question, from the answers to all their probe prompts in order."""
        scores, start = [], 0
        for passage in passages:
            end = start + len(passage.questions)
            grades = self.domain.score(passage, [answer.text for answer in answers[start:end]])
            scores.append([float(grade["correct"]) for grade in grades])
            start = end
        return scores

    def _reward(self, before: Scores, after: Scores) -> float:
        """Retention-aware reward of a candidate (a document without probes counts as no gain)."""
        return retention_aware_reward(
            before[0] or [0.0], after[0] or [0.0], before[1], after[1], self.settings.retention_weight
        )

    def _decide(self, before: Scores, after: Scores, result: CandidateResult, retried: bool = False) -> UpdateDecision:
        if result.stats.stopped:  # its weights are not fit to merge, verified or not; it answered nothing to score
            return UpdateDecision(REJECTED, result.stats.stopped, None, None)
        if not self.settings.verify:
            return UpdateDecision(ACCEPTED, "accepted unverified (naive sequential updates)", None, None)
        return decide_update(before[0], after[0], before[1], after[1], self.settings.policy, retried=retried)

    def _record(
        self,
        decision,
        document,
        location,
        probes,
        before,
        after,
        candidate: Candidate,
        result: CandidateResult,
        started,
        clock,
        details,
    ) -> UpdateRecord:
        own_sequences = [example.prompt + example.completion for example in candidate.plan.examples]
        return UpdateRecord(
            decision=decision.verdict,
            reason=decision.reason,
            document_id=document.id,
            document_path=location.path if location else "",
            document_index=location.index if location else None,
            self_edit=candidate.self_edit.text,
            probes=[{"id": q.id, "question": q.question, "answers": list(q.answers)} for q in probes],
            scores_before=before[0],
            scores_after=after[0],
            retention_before=before[1],
            retention_after=after[1],
            adapter_sha256=tensors_sha256(result.adapter_state),
            started=started,
            details={
                "title": document.title,
                "gain": decision.gain,
                "retention_drop": decision.retention_drop,
                "self_edit_truncated": candidate.self_edit.truncated,
                "self_edit_rejected": candidate.rejected,
                "unfaithful_dropped": len(candidate.unfaithful),
                "unfaithful": [asdict(line) for line in candidate.unfaithful],
                "train_sequences": own_sequences,
                "train": vars(result.stats),
                "seconds": round(time.perf_counter() - clock, 3),
                **details,
            },
        )


def learn_stream(
    learner: ContinualLearner,
    source: str,
    *,
    follow: bool = False,
    stop: StopCondition = None,
    poll_interval: float = 1.0,
) -> Iterator[Outcome | StreamError]:
    """Learn every document of ``source`` the ledger has not decided yet, in order; yields each outcome,
    and each unreadable file or record (skipped: the stream goes on)."""
    seen = learner.ledger.decided_documents()
    for item in read_stream(source, follow=follow, stop=stop, seen=seen, poll_interval=poll_interval):
        yield item if isinstance(item, StreamError) else learner.learn(item.passage, item.location)


def write_probes(
    inner_loop: InnerLoop, domain: KnowledgeDomain, passage: Passage, count: int, generation: GenerationSettings
) -> tuple[WrittenProbes, Generation]:
    """The current model writes up to ``count`` probes about ``passage`` (shown in its prompt); the kept ones and the raw text."""
    prompt = probe_prompt(domain.formatter, passage.title, passage.context, count)
    text = inner_loop.generate_with_base([prompt], generation)[0]
    written = parse_probes(
        text.text,
        passage.context,
        title=passage.title,
        id_prefix=short_id(passage.id),
        max_probes=count,
        truncated=text.truncated,
    )
    return written, text


def drop_unfaithful(plan: TrainPlan, document: Passage) -> tuple[TrainPlan, tuple[DroppedLine, ...]]:
    """``plan`` without the sequences naming things the document does not (see :func:`check_faithfulness`)."""
    check = check_faithfulness([example.completion for example in plan.examples], document.context, document.title)
    kept = set(check.kept)
    return replace(plan, examples=tuple(e for e in plan.examples if e.completion in kept)), check.dropped


def _replay_entry(record: UpdateRecord) -> ReplayEntry:
    probes = tuple(Question(p["id"], p["question"], tuple(p["answers"])) for p in record.probes)
    return ReplayEntry(record.document_id, record.details["title"], probes, tuple(record.details["train_sequences"]))


def _phase(document: Passage, text: str) -> None:
    """One progress line: which phase of learning ``document`` starts (seal adapt prints the log)."""
    log.info("%r: %s", document.title or short_id(document.id), text)


def _split(scores: list[list[float]]) -> Scores:
    """The first passage's scores (the new document), and all the others' (the retention set) in one list."""
    return scores[0], [score for part in scores[1:] for score in part]
