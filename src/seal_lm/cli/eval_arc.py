"""``seal eval arc``: few-shot abstract reasoning with test-time training (SEAL domain 2).

Conditions: ``icl`` (no training, demonstrations in the prompt), ``ttt-oracle`` (test-time training
with a fixed configuration, ``--oracle-config``), ``self-edit`` (``--k`` configurations sampled from
the model, each its own adapter; with ``--model runs/<id>/round-N/policy`` a trained policy).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from seal_lm.cli.options import defaults, option
from seal_lm.cli.report import see_it
from seal_lm.cli.shared_options import ArcOptions, ExecutorOptions, is_file
from seal_lm.domains.arc.config import ConfigRejected, TTTConfig, parse_config
from seal_lm.domains.arc.data import TASK_RECORDS, ArcTask, task_to_dict
from seal_lm.domains.arc.domain import ArcDomain
from seal_lm.domains.arc.submission import write_submission
from seal_lm.loops.evaluate import results_table, run_conditions
from seal_lm.loops.report import markdown_table
from seal_lm.runs.rundir import RunDir, default_run_path

log = logging.getLogger(__name__)


@dataclass
class EvalArcConfig(ExecutorOptions, ArcOptions):
    conditions: tuple[str, ...] = option(("icl", "ttt-oracle", "self-edit"), "Comma-separated.", ArcDomain.conditions)
    k: int = option(5, "Configurations sampled per task for self-edit (SEAL: 15).")
    oracle_config: str = option(
        "",
        "The ttt-oracle configuration: JSON text or a .json file (default: basic augmentations, all tokens, lr 1e-4, 2 epochs).",
    )
    bootstrap_samples: int = option(2000, "Bootstrap resamples for standard errors.")


def eval_arc(config: EvalArcConfig, tasks: Sequence[ArcTask] | None = None) -> Path:
    """Run the conditions on the tasks (default: those ``--tasks`` names) and write the run directory.

    Each task is recorded (``tasks.jsonl``) before the work starts, so the run shows what it was given.
    """
    if config.k < 1:
        raise ValueError("--k must be at least 1.")
    tasks = config.arc_tasks() if tasks is None else tasks
    settings = config.arc_settings()
    if config.oracle_config:
        settings = replace(settings, default_config=oracle_config(config.oracle_config))
    executor = config.start_executor(config.device)
    with RunDir.open(config.out or default_run_path("eval-arc"), config.run_config(), defaults(config)) as run:
        log.info("Run directory: %s", run.path)
        record_tasks(run, tasks)
        make_domain = partial(ArcDomain, settings=settings)
        records = run_conditions(
            run,
            config.domain(make_domain),
            tasks,
            partial(config.worker, make_domain),
            conditions=config.conditions,
            k=config.k,
            self_edit_generation=config.self_edit_generation(),
            executor=executor,
        )
        for condition, sample in dict.fromkeys((r["condition"], r["sample"]) for r in records):
            chosen = [r for r in records if (r["condition"], r["sample"]) == (condition, sample)]
            write_submission(
                run.path / "submissions" / f"{condition}-{sample}.json", {r["context_id"]: r["grades"] for r in chosen}
            )
        run.write_jsonl(
            "self_edits.jsonl",
            ({"unit": r["unit"], "rejected": r["rejected"], **r["self_edit"]} for r in records if r["self_edit"]),
        )
        summary = results_table(ArcDomain, records, config.bootstrap_samples)
        table = markdown_table(summary, accuracy_label="solved (share of test inputs)")
        run.write_json("results.json", summary)
        run.write_text("results.md", table)
        print(f"\n{table}\nWritten to {run.path}\n{see_it(run.path)}")
        return run.path


def record_tasks(run: RunDir, tasks: Sequence[ArcTask]) -> None:
    """Append each task the run has not recorded yet (demonstrations, test inputs and outputs), before any work on it."""
    recorded = {record["task"] for record in run.records(TASK_RECORDS)}
    for task in tasks:
        if task.id not in recorded:
            run.append(TASK_RECORDS, {"task": task.id, **task_to_dict(task)})


def oracle_config(given: str) -> TTTConfig:
    """The ``--oracle-config`` configuration: the text of an existing file, else the JSON text itself."""
    if not is_file(given) and given.endswith(".json"):
        raise ValueError(f"--oracle-config {given}: no such file.")
    try:
        return parse_config(Path(given).read_text() if is_file(given) else given)
    except ConfigRejected as err:
        raise ValueError(f"--oracle-config {given}: {err}") from None
