"""Benchmark: forgetting under sequential self-edit updates (SEAL's experiment), naive vs guarded.

Runs ``seal eval continual`` on SEAL's eval200 SQuAD passages: ``--sequences`` seeded sequences of
``--n-passages`` passages, each passage learned from the model's own self-edit and merged, all of the
sequence's passages re-tested after every step. Two conditions: naive sequential merging (the paper)
and guarded (the retention guard on model-written probes, retrying with replay). Appends the
summaries (mean ± standard error over sequences), the mean accuracy matrices, the command, date,
machine and wall time to BENCHMARKS.md.

    python benchmarks/continual_forgetting.py --n-passages 8 --sequences 3 --out runs/bench-continual-8x3

The run directory is resumable: re-run the same command after an interruption. ``--no-append`` prints
the section without adding it to BENCHMARKS.md (for trying the script on a small setting).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
from pathlib import Path

from common import SQUAD, command, machine, publish, run_seal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-passages", type=int, default=8)
    parser.add_argument("--sequences", type=int, default=3)
    parser.add_argument("--out", default="runs/bench-continual-8x3")
    parser.add_argument("--model", default="bundled:smollm2-135m-instruct")
    parser.add_argument(
        "--target-modules", default="all-linear", help="LoRA targets (all-linear: what learns a passage at 135M)."
    )
    parser.add_argument("--extra", default="", help="More flags for seal eval continual, quoted.")
    parser.add_argument("--no-append", action="store_true", help="Print the section only; leave BENCHMARKS.md alone.")
    args = parser.parse_args()
    seal_args = [
        "eval",
        "continual",
        "--model",
        args.model,
        "--data",
        str(SQUAD / "eval200.json"),
        "--n-passages",
        str(args.n_passages),
        "--sequences",
        str(args.sequences),
        "--guard",
        "--target-modules",
        args.target_modules,
        "--out",
        args.out,
        *shlex.split(args.extra),
    ]
    wall = run_seal(seal_args)
    table = (Path(args.out) / "results.md").read_text()
    section = f"""
## Forgetting under sequential updates: {args.sequences} sequences of {args.n_passages} eval200 passages ({dt.date.today()})

Command: `{command()}`
(= `seal {" ".join(map(shlex.quote, seal_args))}`)
Machine: {machine()}; wall time of this invocation {wall / 60:.1f} min (a resumed run counts only the resumed part).
Heatmap: `{args.out}/forgetting.png`. Summaries are means over sequences ± standard error; backward
transfer is negative and forgetting positive when later updates erase earlier passages.

{table}
"""
    publish(section, append=not args.no_append)


if __name__ == "__main__":
    main()
