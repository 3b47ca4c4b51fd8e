"""Benchmark: the single-passage self-edit table of each ReST-EM round's policy, rounds compared pairwise.

Each ``LABEL=RUN_DIR`` is a ``seal eval knowledge`` run with the ``self-edit`` condition on the same
passages (for example the round-0, round-1 and round-2 policies of ``seal train knowledge``); runs
still in progress are compared on the passages they all finished. Its self-edit records become one
row; every row is compared with the first by a paired bootstrap over passages. ``LABEL=RUN_DIR@CONDITION``
takes another condition of a run as the row (a control: ``@passage-repeat``, ``@external``). A second table
profiles each policy's self-edits, and ``--train`` adds what each training round saw and kept.
Appends the section to BENCHMARKS.md:

    python benchmarks/restem_rounds.py round-0=runs/eval-round0 round-1=runs/eval-round1 round-2=runs/eval-round2 --train runs/train
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
from pathlib import Path

from common import command, machine, publish

from seal_lm.loops.evaluate import RECORDS, per_context
from seal_lm.loops.report import markdown_table, summarize
from seal_lm.report.self_edits import mean_copied_share
from seal_lm.runs.rundir import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    parser.add_argument("--condition", default="self-edit", help="the condition of each run to compare")
    parser.add_argument(
        "--train", type=Path, help="the seal train knowledge run directory whose rounds made the policies"
    )
    parser.add_argument("--no-append", action="store_true", help="Print the section only; leave BENCHMARKS.md alone.")
    args = parser.parse_args()
    runs = [_row(run, args.condition) for run in args.runs]
    section = compare_rounds(runs)
    if args.train:
        section += f"\nThe training rounds (`{args.train}`):\n\n{training_rounds(args.train)}"
    section += f"\nEach policy's self-edits (copied 5-grams: share of a self-edit's word 5-grams found in the prompt's passage):\n\n{self_edit_profile(runs)}"
    publish(section, append=not args.no_append)


def _row(argument: str, condition: str) -> tuple[str, Path, str]:
    """``LABEL=RUN_DIR[@CONDITION]`` as (label, run directory, condition)."""
    label, _, where = argument.partition("=")
    path, _, named = where.partition("@")
    return label, Path(path), named or condition


def compare_rounds(runs: list[tuple[str, Path, str]]) -> str:
    """A BENCHMARKS section: one row per (label, run directory, condition), each compared with the first.

    Only passages every run has finished are counted, so that the comparison stays paired (runs
    still in progress can be compared on what they share).
    """
    per_run = records_on_shared_passages(runs)
    shared = {r["context_id"] for found in per_run.values() for r in found}
    records = [r | {"condition": label} for label, found in per_run.items() for r in found]
    first = runs[0][0]
    summary = summarize(records, reference=first)
    conditions = ", ".join(f"`{label}`: {condition}" for label, _, condition in runs)
    return f"""
## ReST-EM rounds compared: each policy's self-edits ({dt.date.today()})

Rows ({conditions}).
Command: `{command()}`. Machine: {machine()}. Δ is each row minus `{first}`, 95% paired bootstrap over
the {len(shared)} passages every policy was evaluated on.

{markdown_table(summary)}
"""


def records_on_shared_passages(runs: list[tuple[str, Path, str]]) -> dict[str, list[dict]]:
    """Each run's records of its condition, on the passages every run has finished."""
    per_run = {}
    for label, path, condition in runs:
        records = [part for record in RunDir(path).records(RECORDS) for part in per_context(record)]  # CPT runs too
        per_run[label] = [r for r in records if r["condition"] == condition]
        if not per_run[label]:
            raise SystemExit(f"{path} has no '{condition}' records: run its seal eval knowledge first.")
    shared = set.intersection(*({r["context_id"] for r in found} for found in per_run.values()))
    return {label: [r for r in found if r["context_id"] in shared] for label, found in per_run.items()}


def training_rounds(train_dir: Path) -> str:
    """A table of what each ReST-EM round of ``seal train`` saw and kept (from its samples and summary)."""
    rows = [
        "| round | contexts | self-edits | mean reward | mean best-of-k | within-context reward SD | contexts with any reward "
        "| kept | rejected | mean self-edit tokens | truncated | M-step loss first → last | minutes |",
        "|---" * 13 + "|",
    ]
    for summary_path in sorted(train_dir.glob("round-*/summary.json"), key=lambda p: int(p.parent.name.split("-")[1])):
        summary = json.loads(summary_path.read_text())
        records = list(RunDir(train_dir).records(f"{summary_path.parent.name}/samples.jsonl"))
        samples = [s for r in records for s in r["samples"]]
        best = statistics.fmean(max(x or 0.0 for x in r["rewards"]) for r in records)
        update = summary["policy_update"]
        loss = f"{update['first_loss']:.2f} → {update['last_loss']:.2f}" if update else "(carried over)"
        minutes = (summary["e_step_seconds"] + summary["m_step_seconds"]) / 60
        rows.append(
            f"| {summary['round']} | {summary['contexts']} | {summary['self_edits']} | {summary['mean_reward']:.3f} | {best:.3f} | "
            f"{summary['reward_sd_within_context']:.3f} | {summary['contexts_with_any_reward']} | {summary['kept']} | "
            f"{summary['rejected_self_edits']} | {statistics.fmean(s['tokens'] for s in samples):.0f} | "
            f"{sum(1 for s in samples if s['truncated'])} | {loss} | {minutes:.0f} |"
        )
    return "\n".join(rows) + "\n"


def self_edit_profile(runs: list[tuple[str, Path, str]]) -> str:
    """A table of what each policy's self-edits look like: length, usable lines, and how much is copied from the passage."""
    rows = [
        "| policy | self-edits | rejected | truncated | mean tokens | mean training lines | copied 5-grams | accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    written = {
        label for label, _, condition in runs if condition in ("self-edit", "external")
    }  # not a control's copies
    for label, records in records_on_shared_passages(runs).items():
        if label not in written:
            continue
        edits = [r["self_edit"] for r in records]
        lines = [
            len(r["train"]["sequences"]) - 1 for r in records if r["train"]
        ]  # the last sequence is the passage itself
        copied = mean_copied_share((e["text"], e["prompt"]) for e in edits)
        grades = [g["correct"] for r in records for g in r["grades"]]
        rows.append(
            f"| {label} | {len(records)} | {sum(1 for r in records if r['rejected'])} | {sum(1 for e in edits if e['truncated'])} | "
            f"{statistics.fmean(e['tokens'] for e in edits):.0f} | {statistics.fmean(lines) if lines else 0:.1f} | "
            f"{100 * (copied or 0):.0f}% | {100 * statistics.fmean(grades):.1f}% |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
