"""The baseline-conditions evaluation: how much does each kind of training data teach the model?

For every context and condition the loop runs one *unit of work* and appends its record to
``records.jsonl`` the moment it is finished:

- ``base``: no training; the untouched model answers the probes.
- ``passage``: a fresh adapter trained on the context alone.
- ``self-edit``: the model writes ``k`` self-edits; each trains its own fresh adapter.
- ``external``: ``k`` self-edits read from a file (for example GPT-4.1's), parsed the same way.

A re-run into the same directory skips finished units. At the end the per-answer files, official
SQuAD prediction files and the results table are derived from the records.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from seal_lm.adapt.lora import InnerLoop, TrainPlan
from seal_lm.domains.base import Domain, SelfEditRejected
from seal_lm.model.generation import GenerationSettings
from seal_lm.runs.rundir import RunDir

log = logging.getLogger(__name__)

CONDITIONS = ("base", "passage", "self-edit", "external")
RECORDS = "records.jsonl"


def unit_key(context_id: str, condition: str, sample: int) -> str:
    return f"{context_id}/{condition}/{sample}"


def run_conditions(
    run: RunDir,
    domain: Domain,
    contexts: Sequence[Any],
    inner_loop: InnerLoop,
    *,
    conditions: Sequence[str],
    k: int,
    self_edit_generation: GenerationSettings,
    external_self_edits: Callable[[Any], list[str]] | None = None,
    judge: Callable[[dict], bool] | None = None,
) -> list[dict]:
    """Run every (context, condition, sample) unit not yet in ``run``; return all records."""
    conditions = list(dict.fromkeys(conditions))  # a condition named twice runs once
    unknown = set(conditions) - set(CONDITIONS)
    if unknown:
        raise ValueError(f"Unknown condition(s) {', '.join(sorted(unknown))}. Available: {', '.join(CONDITIONS)}.")
    if "external" in conditions and external_self_edits is None:
        raise ValueError("The 'external' condition needs a file of self-edits (--external FILE).")
    done = {record["unit"] for record in run.records(RECORDS)}
    units = [
        (context, condition, sample)
        for context in contexts
        for condition in conditions
        for sample in range(k if condition in ("self-edit", "external") else 1)
    ]
    todo = [u for u in units if unit_key(domain.context_id(u[0]), u[1], u[2]) not in done]
    if done:
        log.info("Resuming %s: %d of %d units already done", run.path, len(units) - len(todo), len(units))
    for context, condition, sample in tqdm(todo, desc="units", unit="unit"):
        record = _run_unit(domain, context, condition, sample, inner_loop, self_edit_generation, external_self_edits)
        if judge is not None:
            for grade in record["grades"]:
                grade["judge"] = judge(grade)
        run.append(RECORDS, record)
    return run.records(RECORDS)


def _run_unit(
    domain: Domain,
    context: Any,
    condition: str,
    sample: int,
    inner_loop: InnerLoop,
    self_edit_generation: GenerationSettings,
    external_self_edits: Callable[[Any], list[str]] | None,
) -> dict:
    start = time.perf_counter()
    context_id = domain.context_id(context)
    prompts = domain.probe_prompts(context)
    record: dict[str, Any] = {
        "unit": unit_key(context_id, condition, sample),
        "context_id": context_id,
        "condition": condition,
        "sample": sample,
        "self_edit": None,
        "rejected": None,
        "train": None,
    }
    plan: TrainPlan | None = None
    if condition == "passage":
        plan = domain.context_plan(context)
    elif condition in ("self-edit", "external"):
        if condition == "self-edit":
            record["self_edit"] = _write_self_edit(domain, context, inner_loop, self_edit_generation, sample)
        else:
            record["self_edit"] = {"text": external_self_edits(context)[sample], "source": "external"}
        try:
            edit = record["self_edit"]
            plan = domain.parse_self_edit(context, edit["text"], edit.get("truncated", False))
            plan = replace(plan, settings=replace(plan.settings, seed=plan.settings.seed + sample))
        except SelfEditRejected as reason:
            record["rejected"] = str(reason)
    if record["rejected"]:
        answers = [""] * len(prompts)  # an unusable self-edit earns nothing
    elif plan is None:
        answers = [g.text for g in inner_loop.generate_with_base(prompts, domain.answer_generation)]
    else:
        result = inner_loop.train_and_answer([plan], prompts, domain.answer_generation)[0]
        answers = [g.text for g in result.answers]
        record["train"] = {"sequences": [e.prompt + e.completion for e in plan.examples], **vars(result.stats)}
    record["grades"] = domain.score(context, answers)
    record["seconds"] = round(time.perf_counter() - start, 3)
    return record


def _write_self_edit(
    domain: Domain, context: Any, inner_loop: InnerLoop, settings: GenerationSettings, sample: int
) -> dict:
    prompt = domain.self_edit_prompt(context)
    if prompt is None:
        return {"prompt": None, "text": "", "tokens": 0, "truncated": False}
    seeded = replace(settings, seed=settings.seed + sample)
    generation = inner_loop.generate_with_base([prompt], seeded)[0]
    return {"prompt": prompt, "text": generation.text, "tokens": generation.tokens, "truncated": generation.truncated}
