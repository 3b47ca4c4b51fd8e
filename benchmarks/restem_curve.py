"""Benchmark: SEAL's RL curve on the bundled model, end to end: ReST-EM rounds, then each round's policy evaluated.

Runs, each step resumable (re-run the same command after an interruption; finished steps are skipped
by the run directories themselves):

1. ``seal train knowledge``: ``--rounds`` rounds of ``--contexts-per-round`` train_pool passages × ``--k``
   self-edits (best-of-k, the paper's rule), into ``OUT/train``;
2. ``seal eval knowledge`` on the first ``--n-passages`` eval200 passages for the round-0 policy (the
   bundled model: conditions base, passage and self-edit) and for every round's policy (self-edit), into
   ``OUT/eval-round-N``;
3. the rounds compared pairwise (``restem_rounds.compare_rounds``), with what each training round saw and
   kept and what each policy's self-edits look like, appended to BENCHMARKS.md;
4. with ``--cpt``, the continued-pretraining setting (all passages pooled into one adapter) for the
   round-0 and the last policy, into ``OUT/cpt-round-N``, their self-edit rows compared the same way, also appended.

    python benchmarks/restem_curve.py --contexts-per-round 10 --k 4 --n-passages 50 --out runs/restem-curve
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
from pathlib import Path

from common import SQUAD, command, machine, publish, run_seal
from restem_rounds import compare_rounds, self_edit_profile, training_rounds

BUNDLED = "bundled:smollm2-135m-instruct"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--contexts-per-round", type=int, default=10)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--n-passages", type=int, default=50, help="eval200 passages each policy is evaluated on")
    parser.add_argument("--engine", default="sequential")
    parser.add_argument(
        "--target-modules",
        default="all-linear",
        help="LoRA targets of the inner loop (all-linear: what learns a passage at 135M).",
    )
    parser.add_argument(
        "--cpt", action="store_true", help="Also run the continued-pretraining setting for the first and last policy."
    )
    parser.add_argument("--out", default="runs/restem-curve")
    parser.add_argument("--extra", default="", help="More flags for every seal command, quoted.")
    parser.add_argument("--no-append", action="store_true", help="Print the sections only; leave BENCHMARKS.md alone.")
    args = parser.parse_args()
    out = Path(args.out)
    shared = ["--target-modules", args.target_modules, "--engine", args.engine, *shlex.split(args.extra)]
    run_seal(
        [
            "train",
            "knowledge",
            "--data",
            str(SQUAD / "train_pool.json"),
            "--rounds",
            str(args.rounds),
            "--contexts-per-round",
            str(args.contexts_per_round),
            "--k",
            str(args.k),
            "--out",
            str(out / "train"),
            *shared,
        ]
    )
    policies = [BUNDLED] + [str(out / "train" / f"round-{r}" / "policy") for r in range(1, args.rounds + 1)]
    evaluations = []
    for round_, policy in enumerate(policies):
        conditions = "base,passage,self-edit" if round_ == 0 else "self-edit"
        run = out / f"eval-round-{round_}"
        run_seal(
            [
                "eval",
                "knowledge",
                "--model",
                policy,
                "--data",
                str(SQUAD / "eval200.json"),
                "--n-passages",
                str(args.n_passages),
                "--conditions",
                conditions,
                "--out",
                str(run),
                *shared,
            ]
        )
        evaluations.append((f"round-{round_}", run, "self-edit"))
    publish(
        compare_rounds(evaluations)
        + f"\nThe training rounds (`{out / 'train'}`, M={args.contexts_per_round} passages × k={args.k} self-edits, best-of-k):\n\n"
        + training_rounds(out / "train")
        + "\nEach policy's self-edits (copied 5-grams: share of a self-edit's word 5-grams found in the prompt's passage):\n\n"
        + self_edit_profile(evaluations),
        append=not args.no_append,
    )
    if args.cpt:
        cpt_runs = []
        for round_ in (0, args.rounds):
            run = out / f"cpt-round-{round_}"
            conditions = "base,passage,self-edit" if round_ == 0 else "self-edit"
            run_seal(
                [
                    "eval",
                    "knowledge",
                    "--setting",
                    "cpt",
                    "--model",
                    policies[round_],
                    "--data",
                    str(SQUAD / "eval200.json"),
                    "--n-passages",
                    str(args.n_passages),
                    "--conditions",
                    conditions,
                    "--out",
                    str(run),
                    *shared,
                ]
            )
            cpt_runs.append((f"cpt-round-{round_}", run, "self-edit"))
        publish(
            f"\n## Continued pretraining, {args.n_passages} eval200 passages pooled ({dt.date.today()})\n\n"
            f"Command: `{command()}` (its steps `{cpt_runs[0][1]}`, `{cpt_runs[1][1]}`). Machine: {machine()}.\n\n"
            f"The round-0 policy:\n\n{(cpt_runs[0][1] / 'results.md').read_text()}" + compare_rounds(cpt_runs),
            append=not args.no_append,
        )


if __name__ == "__main__":
    main()
