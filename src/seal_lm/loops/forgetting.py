"""The forgetting experiment: learn T passages one after another, re-test every passage after each step.

Each *sequence* is a seeded sample of T passages. Under each *condition* (named
:class:`~seal_lm.loops.continual.ContinualSettings`: for example ``naive``, the paper's sequential
merging, and ``guarded``, with the retention guard and replay) a :class:`ContinualLearner` learns the
passages in order, and after step ``i`` answers the gold questions of all T passages without them in
its prompt. That gives, per condition and sequence, the accuracy matrix ``A[i][j]`` (T rows: after
learning passages 0..i; entry j: the sequence's passage j), and once per sequence the row ``before``
any update. The gold questions are only ever used for this evaluation (the guard writes its own
probes unless told otherwise).

Resumable per (sequence, step): each step's row is appended to ``records.jsonl`` as it is measured,
and each (condition, sequence) keeps its model versions in its own ledger (``ledgers/<condition>-<s>``),
so a killed run continues from the last committed step.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict

from tqdm.auto import tqdm

from seal_lm.continual.ledger import Ledger
from seal_lm.continual.metrics import mean_matrix, summarize
from seal_lm.domains.knowledge.data import Passage
from seal_lm.loops.continual import ContinualLearner, ContinualSettings, Outcome
from seal_lm.runs.rundir import RunDir

RECORDS = "records.jsonl"

OpenLearner = Callable[[Ledger, ContinualSettings], ContinualLearner]  # a fresh base model, continued from the ledger


def sequences_of(passages: Sequence[Passage], length: int, count: int, seed: int) -> list[list[Passage]]:
    """``count`` seeded samples of ``length`` passages, each in a random order."""
    if not 2 <= length <= len(passages):
        raise ValueError(f"--n-passages must be between 2 and the {len(passages)} passages of --data, got {length}.")
    if count < 1:
        raise ValueError(f"--sequences must be at least 1, got {count}.")
    return [random.Random(seed * 1000 + s).sample(list(passages), length) for s in range(count)]


def run_forgetting(
    run: RunDir,
    sequences: Sequence[Sequence[Passage]],
    conditions: dict[str, ContinualSettings],
    open_learner: OpenLearner,
) -> list[dict]:
    """Measure every (condition, sequence, step) not yet in ``run``; returns all records."""
    done = {record["unit"] for record in run.records(RECORDS)}
    total = sum(len(order) for order in sequences) * len(conditions)
    progress = tqdm(desc="updates", unit="update", total=total, initial=len(done & _step_units(sequences, conditions)))
    for s, order in enumerate(sequences):
        for condition, settings in conditions.items():
            units = [f"{condition}/{s}/{step}" for step in range(len(order))]
            if f"before/{s}" in done and done.issuperset(units):
                continue
            with Ledger.open(run.path / "ledgers" / f"{condition}-{s}") as ledger:
                learner = open_learner(ledger, settings)
                if f"before/{s}" not in done:  # measured before the first condition's first step
                    run.append(
                        RECORDS,
                        {
                            "unit": f"before/{s}",
                            "sequence": s,
                            "passages": [p.id for p in order],
                            "accuracy": learner.accuracies(order),
                        },
                    )
                    done.add(f"before/{s}")
                for step, passage in enumerate(order):
                    if units[step] in done:
                        continue
                    outcome = _decided(ledger, passage.id) or learner.learn(passage)
                    run.append(
                        RECORDS,
                        {
                            "unit": units[step],
                            "condition": condition,
                            "sequence": s,
                            "step": step,
                            "passage_id": passage.id,
                            "decision": outcome.record.decision,
                            "reason": outcome.record.reason,
                            "retried": "retry_of" in outcome.record.details,
                            "version": outcome.version,
                            "accuracy": learner.accuracies(order),
                        },
                    )
                    done.add(units[step])
                    progress.update()
    progress.close()
    return run.records(RECORDS)


def _step_units(sequences: Sequence[Sequence[Passage]], conditions: dict[str, ContinualSettings]) -> set[str]:
    """The unit of every (condition, sequence, step): what the progress bar counts."""
    return {f"{c}/{s}/{step}" for s, order in enumerate(sequences) for c in conditions for step in range(len(order))}


def forgetting_results(records: list[dict], conditions: Sequence[str], sequences: int, length: int) -> dict:
    """Per condition: every sequence's matrix and before row, their mean, the summaries with standard errors, decisions."""
    by_unit = {record["unit"]: record for record in records}
    befores = [by_unit[f"before/{s}"]["accuracy"] for s in range(sequences)]
    results = {
        "layout": "matrices[s][i][j]: accuracy on sequence s's passage j after learning its passages 0..i; "
        "before[s][j]: with no update. mean_matrix: the mean over sequences (None above the diagonal).",
        "sequences": sequences,
        "passages_per_sequence": length,
        "passages": [by_unit[f"before/{s}"]["passages"] for s in range(sequences)],
        "before": befores,
        "mean_before": [sum(column) / sequences for column in zip(*befores)],
        "conditions": {},
    }
    for condition in conditions:
        steps = [[by_unit[f"{condition}/{s}/{i}"] for i in range(length)] for s in range(sequences)]
        matrices = [[step["accuracy"] for step in sequence] for sequence in steps]
        summary = summarize(matrices)
        results["conditions"][condition] = {
            "summary": asdict(summary),
            "mean_matrix": mean_matrix(matrices),
            "matrices": matrices,
            "decisions": dict(Counter(step["decision"] for sequence in steps for step in sequence)),
            "retried": sum(step["retried"] for sequence in steps for step in sequence),
        }
    return results


def _decided(ledger: Ledger, document_id: str) -> Outcome | None:
    """The final decision the ledger holds for a document (a step committed before a kill), if any."""
    if document_id not in ledger.decided_documents():
        return None
    update = [u for u in ledger.updates() if u.record.document_id == document_id][-1]
    return Outcome(update.record, update.version)
