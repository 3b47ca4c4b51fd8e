"""Benchmark: SEAL's ARC table at CPU scale with the bundled model: in-context learning, self-edit
configurations without RL, after one ReST-EM round, and the oracle configuration
(the paper, Llama-3.2-1B: 0% / 20% / 72.5% / 100%).

Steps, each a resumable seal run under ``OUT`` (re-run the same command after an interruption):

1. ``seal arc select-subset`` over the ARC-AGI-1 training tasks whose grids are at most
   ``--max-grid-side`` cells a side: the tasks the oracle configuration solves, which is how the paper
   chose its subset;
2. the solved tasks split in two disjoint halves, alternately: RL training tasks and evaluation tasks;
3. ``seal eval arc`` (icl, ttt-oracle, and ``--k`` sampled configurations) on the evaluation tasks;
4. ``seal train arc``: one round, ``--k`` configurations per RL task, keeping those that solve it;
5. ``seal eval arc`` (``--k`` configurations) with the round-1 policy on the evaluation tasks;
6. the table, appended to BENCHMARKS.md: solved / sampled configurations per condition, rejected
   configurations, seconds per inner loop.

    python benchmarks/arc_cpu.py --max-grid-side 5 --max-examples 24 --k 5 --out runs/arc-cpu

``--constrained-self-edits`` samples the configurations of steps 3-5 under their JSON schema; with
``--tasks`` (the subset an earlier run selected) it skips step 1.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import shlex
import statistics
from pathlib import Path

from common import command, machine, publish, run_seal

from seal_lm.domains.arc.config import TTTConfig
from seal_lm.loops.evaluate import RECORDS
from seal_lm.runs.rundir import RunDir

# Test-time training a 135M model can learn from in a few dozen steps (SEAL's lr 1e-4 barely moves it).
ORACLE = TTTConfig(families=("basic",), strategy="train_using_output_tokens", learning_rate=1e-3, epochs=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-grid-side", type=int, default=5)
    parser.add_argument(
        "--max-tasks", type=int, default=0, help="Candidate tasks tried by the oracle (0: all that fit)."
    )
    parser.add_argument("--max-examples", type=int, default=24, help="Test-time-training examples per configuration.")
    parser.add_argument("--k", type=int, default=5, help="Configurations sampled per task.")
    parser.add_argument("--oracle-config", default=ORACLE.to_json())
    parser.add_argument(
        "--constrained-self-edits",
        action="store_true",
        help="Sample configurations under their JSON schema (eval and train steps).",
    )
    parser.add_argument(
        "--tasks",
        default="",
        help="Skip the selection: these solved training-split task ids (comma-separated) are the subset.",
    )
    parser.add_argument("--out", default="runs/arc-cpu")
    parser.add_argument("--extra", default="", help="More flags for every seal command, quoted.")
    parser.add_argument("--no-append", action="store_true", help="Print the section only; leave BENCHMARKS.md alone.")
    args = parser.parse_args()
    out = Path(args.out)
    shared = ["--split", "training", "--max-examples", str(args.max_examples), *shlex.split(args.extra)]
    oracle = ["--oracle-config", args.oracle_config]
    minutes = {}

    if args.tasks:
        solved = args.tasks.split(",")
        subset_text = f"Subset: {len(solved)} tasks given with --tasks."
    else:
        minutes["select"] = (
            run_seal(
                [
                    "arc",
                    "select-subset",
                    "--max-grid-side",
                    str(args.max_grid_side),
                    "--max-tasks",
                    str(args.max_tasks),
                    "--out",
                    str(out / "subset"),
                    *oracle,
                    *shared,
                ]
            )
            / 60
        )
        subset = json.loads((out / "subset" / "subset.json").read_text())
        solved = subset["selected"]
        subset_text = (
            f"Subset: the oracle solved {len(solved)} of {len(subset['tried'])} ARC-AGI-1 training tasks with every grid "
            f"at most {args.max_grid_side}×{args.max_grid_side}."
        )
    header = (
        f"\n## ARC at CPU scale: icl, self-edit, one RL round, oracle ({dt.date.today()})\n\nCommand: `{command()}`. "
        f"Machine: {machine()}.\nOracle configuration: `{args.oracle_config}`; {args.max_examples} training examples per configuration; "
        f"self-edits sampled {'under the JSON schema' if args.constrained_self_edits else 'as free text'}.\n\n"
        + subset_text
    )
    if len(solved) < 2:
        publish(
            header + " Too few to split into RL and evaluation tasks; nothing else was run.\n",
            append=not args.no_append,
        )
        return
    rl_tasks, eval_tasks = solved[0::2], solved[1::2]
    on_eval_tasks = ["--tasks", ",".join(eval_tasks), "--k", str(args.k)]
    sampling = ["--constrained-self-edits"] if args.constrained_self_edits else []
    minutes["eval base"] = (
        run_seal(
            [
                "eval",
                "arc",
                *on_eval_tasks,
                "--conditions",
                "icl,ttt-oracle,self-edit",
                "--out",
                str(out / "eval-base"),
                *oracle,
                *sampling,
                *shared,
            ]
        )
        / 60
    )
    minutes["train"] = (
        run_seal(
            [
                "train",
                "arc",
                "--tasks",
                ",".join(rl_tasks),
                "--contexts-per-round",
                str(len(rl_tasks)),
                "--k",
                str(args.k),
                "--rounds",
                "1",
                "--out",
                str(out / "train"),
                *sampling,
                *shared,
            ]
        )
        / 60
    )
    policy = out / "train" / "round-1" / "policy"
    minutes["eval policy"] = (
        run_seal(
            [
                "eval",
                "arc",
                *shared,
                "--model",
                str(policy),
                *on_eval_tasks,
                "--conditions",
                "self-edit",
                "--out",
                str(out / "eval-round-1"),
                *sampling,
            ]
        )
        / 60
    )

    base = list(RunDir(out / "eval-base").records(RECORDS))
    rows = [
        ("icl (no training)", [r for r in base if r["condition"] == "icl"]),
        ("self-edit, no RL", [r for r in base if r["condition"] == "self-edit"]),
        (
            "self-edit, after 1 RL round",
            [r for r in RunDir(out / "eval-round-1").records(RECORDS) if r["condition"] == "self-edit"],
        ),
        ("oracle configuration", [r for r in base if r["condition"] == "ttt-oracle"]),
    ]
    table = [
        "| condition | tasks | sampled configs | rejected | solved configs | solved share | s / inner loop |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, records in rows:
        solved_units = sum(1 for r in records if r["grades"] and all(g["correct"] for g in r["grades"]))
        seconds = [r["train"]["seconds"] for r in records if r["train"]]
        table.append(
            f"| {label} | {len({r['context_id'] for r in records})} | {len(records)} | {sum(1 for r in records if r['rejected'])} | "
            f"{solved_units} | {100 * solved_units / max(len(records), 1):.0f}% | {statistics.fmean(seconds) if seconds else 0:.1f} |"
        )
    reasons = collections.Counter(
        r["rejected"] for _, records in rows for r in records if r["rejected"]
    )  # the commonest are listed
    rounds = json.loads((out / "train" / "round-1" / "summary.json").read_text())
    publish(
        f"{header}\nRL tasks ({len(rl_tasks)}): {', '.join(rl_tasks)}. Evaluation tasks ({len(eval_tasks)}): {', '.join(eval_tasks)}.\n\n"
        + "\n".join(table)
        + f"\n\nRL round: {rounds['self_edits']} configurations sampled, {rounds['rejected_self_edits']} rejected, {rounds['kept']} kept "
        f"(solved their task){'; the policy was carried over unchanged' if rounds['policy_carried_over'] else ''}.\n"
        + "".join(f"\n- rejected {count}×: {reason}" for reason, count in reasons.most_common(5))
        + "\n\n"
        f"Wall time (min): {', '.join(f'{step} {value:.1f}' for step, value in minutes.items())} (a resumed step counts only its resumed part).\n",
        append=not args.no_append,
    )


if __name__ == "__main__":
    main()
