"""The baseline-conditions evaluation: how much does each kind of training data teach the model?

Two settings. *Single* (the paper's main table): for every context and condition the loop runs one
*unit of work*, a fresh adapter per context. *Pooled* (continued pretraining): per condition, the
training data of all contexts goes into one adapter, probed on all their questions. Either way each
unit's record is appended to ``records.jsonl`` the moment it is finished. The conditions:

- ``base``: no training; the untouched model answers the probes.
- ``in-context``: no training; the untouched model answers the probes with the context in them (the ceiling).
- ``context``: a fresh adapter trained on the context alone (knowledge: "passage"; ARC: "ttt-oracle").
- ``context-repeat``: the context alone, repeated to the size of each of the ``k`` self-edits the
  ``self-edit`` kind would write (the same samples: they are seeded by the context), so it needs no
  other condition to have run (knowledge: "passage-repeat", the size-matched control).
- ``self-edit``: the model writes ``k`` self-edits; each trains its own fresh adapter.
- ``external``: ``k`` self-edits read from a file (for example GPT-4.1's), parsed the same way.

A domain names its conditions and says which of these kinds each one is (``domain.conditions``).

The model's own self-edits are written first, for every context that needs them and before any
training: several contexts in one batched generation (a batch-1 generation would read all the weights
for every token of one self-edit), each saved to ``written_self_edits.jsonl`` the moment its batch is done.

In the single setting each (context, condition) group of units is one job for an executor
(:mod:`seal_lm.runs.executor`): in this process, or spread over Ray workers, each with its own model
replica. In this process a job hands back each unit as it finishes (so a kill loses at most the
adapter in training); a Ray job's units come back together when the job ends. Records are appended
in the order units arrive; a job's records depend only on the job.

A re-run into the same directory skips finished units. An LLM judge runs afterwards, over the saved
records (:func:`judge_answers`). At the end the per-answer files, official SQuAD prediction files
and the results table are derived from the records.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any

from tqdm.auto import tqdm

from seal_lm.adapt.lora import TrainPlan
from seal_lm.choices import check_choice
from seal_lm.domains.base import Domain, SelfEditRejected
from seal_lm.loops.report import summarize
from seal_lm.loops.self_edits import reseeded, sample_self_edits_of_many
from seal_lm.loops.worker import Worker
from seal_lm.model.generation import GenerationSettings
from seal_lm.runs.executor import Executor, InProcessExecutor
from seal_lm.runs.rundir import RunDir

log = logging.getLogger(__name__)

KINDS = (
    "base",
    "in-context",
    "context",
    "context-repeat",
    "self-edit",
    "external",
)  # what a domain's named conditions train on
SAMPLED_KINDS = ("context-repeat", "self-edit", "external")  # kinds with k samples per context
WRITTEN_KINDS = ("context-repeat", "self-edit")  # kinds that train on (the size of) the model's own self-edits
RECORDS = "records.jsonl"
WRITTEN = "written_self_edits.jsonl"  # the model's self-edits {context_id, sample, self_edit}, saved as written
JUDGEMENTS = "judgements.jsonl"  # the LLM judge's verdicts: {unit, question (index of the grade), judge}


def unit_key(context_id: str, condition: str, sample: int) -> str:
    return f"{context_id}/{condition}/{sample}"


def run_conditions(
    run: RunDir,
    domain: Domain,
    contexts: Sequence[Any],
    make_worker: Callable[[], Worker],
    *,
    conditions: Sequence[str],
    k: int,
    self_edit_generation: GenerationSettings,
    external_self_edits: Callable[[Any], list[str]] | None = None,
    pooled: bool = False,
    executor: Executor | None = None,
) -> list[dict]:
    """Run every unit not yet in ``run``; return all records, one per (context, condition, sample), in that order.

    ``domain`` names the contexts and conditions here; the jobs run on workers built by ``make_worker``
    (picklable for a Ray ``executor``; default: in this process). ``pooled`` selects the
    continued-pretraining setting (:func:`_run_pooled`), which always runs in this process.
    """
    conditions = _checked(domain, conditions, external_self_edits)
    executor = executor or InProcessExecutor()
    if pooled:
        worker = make_worker()
        writes = any(domain.conditions[condition] in WRITTEN_KINDS for condition in conditions)
        to_write = {domain.context_id(context) for context in contexts} if writes else set()
        self_edits = written_self_edits(
            run, domain, contexts, to_write, k, self_edit_generation, lambda: worker, InProcessExecutor()
        )
        return _run_pooled(
            run, worker.domain, contexts, worker.inner_loop, conditions, k, self_edits, external_self_edits
        )
    done = {record["unit"] for record in run.records(RECORDS)}
    groups = []  # (context, condition, samples not yet done): the k samples of a context train together
    for context in contexts:
        for condition in conditions:
            samples = range(k if domain.conditions[condition] in SAMPLED_KINDS else 1)
            todo = [s for s in samples if unit_key(domain.context_id(context), condition, s) not in done]
            if todo:
                groups.append((context, condition, todo))
    if done:
        log.info("Resuming %s: %d units already done", run.path, len(done))
    to_write = {domain.context_id(c) for c, condition, _ in groups if domain.conditions[condition] in WRITTEN_KINDS}
    self_edits = written_self_edits(
        run, domain, contexts, to_write, k, self_edit_generation, make_worker, executor
    )  # before any training, so a batch holds several contexts
    groups = [
        (context, condition, todo, self_edits.get(domain.context_id(context))) for context, condition, todo in groups
    ]
    job = partial(_run_group, external_self_edits=external_self_edits)
    with tqdm(desc="units", unit="unit", total=sum(len(todo) for _, _, todo, _ in groups)) as progress:
        for _, records in executor.run(make_worker, job, groups):
            for record in records:  # in this process each record arrives the moment its unit is finished
                run.append(RECORDS, record)
                progress.update()
    position = {domain.context_id(context): index for index, context in enumerate(contexts)}
    return sorted(
        run.records(RECORDS), key=lambda r: (position[r["context_id"]], conditions.index(r["condition"]), r["sample"])
    )


def written_self_edits(
    run: RunDir,
    domain: Domain,
    contexts: Sequence[Any],
    to_write: set[str],
    k: int,
    settings: GenerationSettings,
    make_worker: Callable[[], Worker],
    executor: Executor,
) -> dict[str, list[dict]]:
    """The ``k`` self-edits of every context whose id is in ``to_write`` (context id → records, one per sample).

    ``run`` keeps them in ``written_self_edits.jsonl``; the missing ones are written on ``executor``, several
    contexts in each batched generation (at most as many as fill ``settings.batch_size`` rows), in at
    least one batch per worker, of even sizes. Each prompt samples from its own seed
    (:class:`~seal_lm.model.generation.SampleEachRow`), so a context's self-edits do not depend on its
    batch, and a resumed run batches what is left. Each context's self-edits are saved the moment its batch is done.
    """
    saved: dict[str, dict[int, dict]] = {}
    for record in run.records(WRITTEN):
        saved.setdefault(record["context_id"], {})[record["sample"]] = record["self_edit"]

    def missing(context: Any) -> bool:
        context_id = domain.context_id(context)
        return context_id in to_write and len(saved.get(context_id, {})) < k

    todo = even_batches(
        [context for context in contexts if missing(context)], settings.batch_size // k, executor.workers
    )
    job = partial(_write_self_edits, k=k, settings=settings)
    with tqdm(desc="self-edits", unit="context", total=sum(map(len, todo)), disable=not todo) as progress:
        for batch, written in executor.run(make_worker, job, todo):
            for context, self_edits in zip(batch, written):
                if missing(context):
                    context_id = domain.context_id(context)
                    samples = saved.setdefault(context_id, {})
                    for sample, self_edit in enumerate(self_edits):
                        if sample not in samples:
                            samples[sample] = self_edit
                            run.append(WRITTEN, {"context_id": context_id, "sample": sample, "self_edit": self_edit})
                    progress.update()
    return {
        context_id: [samples[s] for s in range(k)] for context_id, samples in saved.items() if context_id in to_write
    }


def even_batches(items: Sequence[Any], most: int, workers: int) -> list[tuple]:
    """``items`` in order, in as few batches of at most ``most`` (at least 1) as hold them, but no fewer
    than ``workers`` (so that every worker gets one), their sizes within one of each other."""
    if not items:
        return []
    count = max(math.ceil(len(items) / max(1, most)), min(workers, len(items)))
    size, larger = divmod(len(items), count)
    starts = [i * size + min(i, larger) for i in range(count + 1)]
    return [tuple(items[start:end]) for start, end in zip(starts, starts[1:])]


def _write_self_edits(
    worker: Worker, contexts: Sequence[Any], *, k: int, settings: GenerationSettings
) -> list[list[dict]]:
    """A job: ``k`` self-edits for each of ``contexts``, as records, in one batched generation."""
    return [
        [{"prompt": prompt, "text": g.text, "tokens": g.tokens, "truncated": g.truncated} for g in generations]
        for prompt, generations in sample_self_edits_of_many(worker.inner_loop, worker.domain, contexts, k, settings)
    ]


def _run_pooled(run, domain, contexts, inner_loop, conditions, k, self_edits, external_self_edits) -> list[dict]:
    """Continued pretraining: one adapter per (condition, sample) on the pooled data of all contexts
    (or all weights, trained and then restored, with a full fine-tuning engine: :mod:`seal_lm.adapt.full`).

    Returns per-context records (the pooled training statistics on the first context's record), the
    same shape as the single setting's, so one report serves both settings.
    """
    done = {record["unit"]: record for record in run.records(RECORDS)}
    units = [
        (f"pooled/{condition}/{sample}", condition, sample)
        for condition in conditions
        for sample in range(k if domain.conditions[condition] in SAMPLED_KINDS else 1)
    ]
    todo = [unit for unit in units if unit[0] not in done]
    for key, condition, sample in tqdm(todo, desc="pooled units", unit="unit"):
        done[key] = _run_pooled_unit(
            key, domain, contexts, condition, sample, inner_loop, self_edits, external_self_edits
        )
        run.append(RECORDS, done[key])
    return [part for record in done.values() for part in per_context(record)]


def _run_pooled_unit(key, domain, contexts, condition, sample, inner_loop, self_edits, external_self_edits) -> dict:
    start = time.perf_counter()
    parts, examples, settings = [], [], None
    for context in contexts:
        written = self_edits.get(domain.context_id(context))
        plan, self_edit, rejected = _plan_for(domain, context, condition, sample, written, external_self_edits)
        if plan is not None:
            examples += plan.examples
            settings = plan.settings
        written = self_edit if domain.conditions[condition] == "self-edit" else None
        parts.append({"context_id": domain.context_id(context), "self_edit": written, "rejected": rejected})
    prompts = [_prompts(domain, context, condition) for context in contexts]
    flat_prompts = [p for group in prompts for p in group]
    train = None
    if examples:
        result = inner_loop.train_and_answer(
            [TrainPlan(tuple(examples), settings)], flat_prompts, domain.answer_generation
        )[0]
        answers = [g.text for g in result.answers]
        train = {"sequences": [e.prompt + e.completion for e in examples], **vars(result.stats)}
    elif domain.conditions[condition] in ("base", "in-context"):
        answers = [g.text for g in inner_loop.generate_with_base(flat_prompts, domain.answer_generation)]
    else:
        answers = [""] * len(flat_prompts)  # every self-edit was unusable
    for context, group, part in zip(contexts, prompts, parts):
        part["grades"] = domain.score(context, answers[: len(group)])
        answers = answers[len(group) :]
    return {
        "unit": key,
        "condition": condition,
        "sample": sample,
        "train": train,
        "contexts": parts,
        "seconds": round(time.perf_counter() - start, 3),
    }


def judge_answers(run: RunDir, records: Sequence[dict], judge: Callable[[dict], bool]) -> None:
    """Judge every answer of ``records`` that ``run`` holds no verdict on, appending each verdict as it comes.

    The verdicts go to their own file, keyed by unit and question (the grade's position in its
    record), after the records are saved: a judge that fails costs no trained work, and a re-run
    judges only what is missing. :func:`with_judgements` puts them into the records.
    """
    judged = {(verdict["unit"], verdict["question"]) for verdict in run.records(JUDGEMENTS)}
    todo = [
        (r["unit"], i, grade) for r in records for i, grade in enumerate(r["grades"]) if (r["unit"], i) not in judged
    ]
    for unit, question, grade in tqdm(todo, desc="judge", unit="answer"):
        run.append(JUDGEMENTS, {"unit": unit, "question": question, "judge": judge(grade)})


def with_judgements(judgements: Iterable[dict], records: Sequence[dict]) -> list[dict]:
    """Copies of ``records`` whose grades carry the judge's verdict (``"judge"``) where ``judgements`` (a run's
    ``judgements.jsonl``) hold one."""
    verdicts = {(verdict["unit"], verdict["question"]): verdict["judge"] for verdict in judgements}
    judged = []
    for record in records:
        keys = [(record["unit"], i) for i in range(len(record["grades"]))]
        grades = [
            grade | ({"judge": verdicts[key]} if key in verdicts else {}) for key, grade in zip(keys, record["grades"])
        ]
        judged.append(record | {"grades": grades})
    return judged


def results_table(domain: Domain | type[Domain], records: Sequence[dict], bootstrap_samples: int) -> dict:
    """The results table (``results.json``) of an evaluation's records: every condition with its scores,
    and against the domain's reference condition, in the order the records first name the conditions."""
    return summarize(records, bootstrap_samples, reference=domain.reference, metrics=domain.metrics)


def per_context(record: dict) -> list[dict]:
    """A record as per-context records: a pooled (continued-pretraining) record is split, its training reported once; others are as they are."""
    if "contexts" not in record:
        return [record]
    share = record["seconds"] / len(record["contexts"])
    return [
        {
            "unit": f"{record['unit']}/{part['context_id']}",
            "condition": record["condition"],
            "sample": record["sample"],
            "train": record["train"] if index == 0 else None,
            "seconds": share,
            **part,
        }
        for index, part in enumerate(record["contexts"])
    ]


def _checked(domain: Domain, conditions: Sequence[str], external_self_edits) -> list[str]:
    conditions = list(dict.fromkeys(conditions))  # a condition named twice runs once
    for condition in conditions:
        check_choice(condition, domain.conditions, "condition")
    if any(domain.conditions[c] == "external" for c in conditions) and external_self_edits is None:
        raise ValueError("The 'external' condition needs a file of self-edits (--external FILE).")
    return conditions


def _run_group(
    worker: Worker,
    group: tuple[Any, str, Sequence[int], list[dict] | None],
    *,
    external_self_edits: Callable[[Any], list[str]] | None,
) -> Iterator[dict]:
    """A job: yields the record of each sample of a (context, condition, samples, the context's written
    self-edits) group as soon as it is finished.

    The samples' adapters train in one engine call, which hands back each result when it has it. A
    record's ``seconds`` is the time since the job's previous record (or its start).
    """
    domain, inner_loop = worker.domain, worker.inner_loop
    context, condition, samples, written = group
    last = time.perf_counter()

    def finished(record: dict, answers: list[str]) -> dict:
        nonlocal last
        now = time.perf_counter()
        record |= {"grades": domain.score(context, answers), "seconds": round(now - last, 3)}
        last = now
        return record

    context_id = domain.context_id(context)
    prompts = _prompts(domain, context, condition)
    plans = []
    for sample in samples:
        plan, self_edit, rejected = _plan_for(domain, context, condition, sample, written, external_self_edits)
        record = {
            "unit": unit_key(context_id, condition, sample),
            "context_id": context_id,
            "condition": condition,
            "sample": sample,
            "self_edit": self_edit,
            "rejected": rejected,
            "train": None,
        }
        if plan is not None:
            plans.append((record, plan))
        elif rejected:
            yield finished(record, [""] * len(prompts))  # an unusable self-edit earns nothing
        else:  # no training: base or in-context
            yield finished(record, [g.text for g in inner_loop.generate_with_base(prompts, domain.answer_generation)])
    results = inner_loop.train_and_answer_each([plan for _, plan in plans], prompts, domain.answer_generation)
    for (record, plan), result in zip(plans, results):
        record["train"] = {"sequences": [e.prompt + e.completion for e in plan.examples], **vars(result.stats)}
        yield finished(record, [g.text for g in result.answers])


def _plan_for(
    domain: Domain,
    context: Any,
    condition: str,
    sample: int,
    written: list[dict] | None,
    external_self_edits: Callable[[Any], list[str]] | None,
) -> tuple[TrainPlan | None, dict | None, str | None]:
    """What ``condition`` trains on for this context: (plan or None, the self-edit, why it was rejected).

    ``written`` holds the context's self-edits written by the model (:func:`written_self_edits`).
    """
    kind = domain.conditions[condition]
    if kind in ("base", "in-context"):
        return None, None, None
    if kind == "context":
        return domain.context_plan(context), None, None
    if kind in ("self-edit", "context-repeat"):
        self_edit = written[sample]
    else:
        self_edit = {"text": external_self_edits(context)[sample], "source": "external"}
    try:
        plan = domain.parse_self_edit(context, self_edit["text"], self_edit.get("truncated", False))
    except SelfEditRejected as reason:
        log.warning(
            "%s %d of context %s is unusable (%s); it scores 0", condition, sample, domain.context_id(context), reason
        )
        return None, self_edit, str(reason)
    if kind == "context-repeat":
        plan = domain.repeat_plan(context, plan)
    return reseeded(plan, sample), self_edit, None


def _prompts(domain: Domain, context: Any, condition: str) -> list[str]:
    """The probe prompts ``condition`` answers: with the context in them for the in-context kind."""
    return (
        domain.in_context_prompts(context)
        if domain.conditions[condition] == "in-context"
        else domain.probe_prompts(context)
    )
