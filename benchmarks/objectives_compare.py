"""Benchmark report: the same `seal eval knowledge` conditions trained with different inner objectives, paired.

Reads finished or still-running run directories of `seal eval knowledge` that differ only in
`--inner-objective` (or in another setting, named by ``--what``, such as the dtype; and in which
conditions each runs), keeps the passages every run has finished
(every condition of that run, so the pairing is by passage), and prints one table: each condition under
each objective with accuracy, exact match and F1, and the paired difference of every objective against
the first one named, on every metric, with 95% bootstrap intervals over passages
(`seal_lm.loops.report`, the tables' own statistics). Conditions without training (base, in-context)
appear once. Appends to BENCHMARKS.md with ``--append``:

    python benchmarks/objectives_compare.py sft=RUN_DIR distill=RUN_DIR --title "..." --append
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
from common import command, machine, publish

from seal_lm.domains.knowledge.data import load_passages
from seal_lm.loops.report import METRICS, paired_difference, per_question_scores, summarize

LABELS = {"correct": "accuracy", "exact_match": "EM", "f1": "F1"}


POSITIONAL_ID = re.compile(r"p(\d{4})")  # how runs named passages before ids were content hashes


def finished_records(run: Path, ids: list[str] | None = None) -> list[dict]:
    """The run's unit records on the passages all of whose conditions are recorded.

    ``ids`` (the ids of the run's data file, in order) renames an older run's positional passage ids.
    """
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines() if line.strip()]
    for record in records:
        positional = POSITIONAL_ID.fullmatch(record["context_id"])
        if ids and positional:
            record["context_id"] = ids[int(positional.group(1))]
    conditions = json.loads((run / "config.json").read_text())["config"]["conditions"]
    done: dict[str, set[str]] = {}
    for record in records:
        done.setdefault(record["context_id"], set()).add(record["condition"])
    complete = {context for context, seen in done.items() if seen >= set(conditions)}
    return [r for r in records if r["context_id"] in complete]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="OBJECTIVE=RUN_DIR, the reference objective first")
    parser.add_argument("--title", default="Inner objectives compared on the same self-edits")
    parser.add_argument("--what", default="objective", help="what differs between the runs (the column's name)")
    parser.add_argument("--bootstrap-samples", type=int, default=2000)
    parser.add_argument("--data", help="the runs' data file: pairs a run older than content-hash passage ids")
    parser.add_argument("--append", action="store_true", help="append the section to BENCHMARKS.md")
    args = parser.parse_args()
    runs = dict(spec.split("=", 1) for spec in args.runs)
    ids = [passage.id for passage in load_passages(args.data)] if args.data else None
    records = {objective: finished_records(Path(run), ids) for objective, run in runs.items()}
    shared = set.intersection(*({r["context_id"] for r in rs} for rs in records.values()))
    records = {objective: [r for r in rs if r["context_id"] in shared] for objective, rs in records.items()}
    reference = next(iter(runs))
    rng = np.random.default_rng(0)
    scores = {
        objective: {metric: per_question_scores(rs, metric) for metric in METRICS} for objective, rs in records.items()
    }
    rows, seen_untrained = [], set()
    for objective, objective_records in records.items():
        table = summarize(objective_records, args.bootstrap_samples, reference=None)["conditions"]
        for condition, row in table.items():
            untrained = row["mean_trained_tokens"] == 0
            if untrained and condition in seen_untrained:
                continue
            seen_untrained |= {condition} if untrained else set()
            differences = []
            if objective != reference and not untrained and condition in scores[reference]["correct"]:
                for metric in METRICS:
                    paired = paired_difference(
                        scores[objective][metric][condition],
                        scores[reference][metric][condition],
                        args.bootstrap_samples,
                        rng,
                    )
                    low, high = paired["ci95"]
                    differences.append(f"{100 * paired['difference']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]")
            rows.append(
                f"| {condition} | {'—' if untrained else objective} | {row['questions']} "
                f"| {100 * row['accuracy']:.1f} | {100 * row['exact_match']:.1f} | {100 * row['f1']:.1f} "
                f"| {' | '.join(differences) if differences else ' | '.join([''] * len(METRICS))} "
                f"| {row['mean_trained_tokens']:.0f} | {row['mean_answer_words'] or 0:.1f} |"
            )
    headers = " | ".join(f"Δ {LABELS[m]} vs {reference} [95% CI]" for m in METRICS)
    section = f"""
## {args.title} ({dt.date.today()})

Command: `{command()}`, over the runs' records;
{len(shared)} passages finished under every {args.what} and condition (paired by passage). Machine of
the runs: {machine().split(";")[0]}.

| condition | {args.what} | questions | accuracy | EM | F1 | {headers} | trained tokens | answer words |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
    publish(section, args.append)


if __name__ == "__main__":
    main()
