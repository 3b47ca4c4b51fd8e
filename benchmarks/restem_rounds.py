"""Benchmark: the single-passage self-edit table of each ReST-EM round's policy, rounds compared pairwise.

Each ``LABEL=RUN_DIR`` is a finished ``seal eval knowledge`` run with the ``self-edit`` condition on the
same passages (for example the round-0, round-1 and round-2 policies of ``seal train knowledge``). Its
self-edit records become one row; every row is compared with the first by a paired bootstrap over
passages. Appends the table to BENCHMARKS.md:

    python benchmarks/restem_rounds.py round-0=runs/eval-round0 round-1=runs/eval-round1 round-2=runs/eval-round2
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from common import command, machine, publish

from seal_lm.loops.evaluate import RECORDS
from seal_lm.loops.report import markdown_table, summarize
from seal_lm.runs.rundir import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    parser.add_argument("--condition", default="self-edit", help="the condition of each run to compare")
    parser.add_argument("--no-append", action="store_true", help="Print the section only; leave BENCHMARKS.md alone.")
    args = parser.parse_args()
    runs = [(label, Path(path)) for label, _, path in (run.partition("=") for run in args.runs)]
    publish(compare_rounds(runs, args.condition), append=not args.no_append)


def compare_rounds(runs: list[tuple[str, Path]], condition: str = "self-edit") -> str:
    """A BENCHMARKS section: one row per (label, run directory), each compared with the first."""
    records = []
    for label, path in runs:
        found = [r for r in RunDir(path).records(RECORDS) if r["condition"] == condition]
        if not found:
            raise SystemExit(f"{path} has no '{condition}' records: run its seal eval knowledge first.")
        records += [r | {"condition": label} for r in found]
    first = runs[0][0]
    summary = summarize(records, reference=first)
    return f"""
## ReST-EM rounds compared: {condition} condition per policy ({dt.date.today()})

Command: `{command()}`. Machine: {machine()}. Δ is each row minus `{first}`, 95% paired bootstrap over passages.

{markdown_table(summary)}
"""

if __name__ == "__main__":
    main()
