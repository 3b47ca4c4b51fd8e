"""Benchmark: candidate inner loops per hour of ``seal eval knowledge``, the old default vs the new.

Runs the same ``seal eval knowledge`` (self-edit condition, ``--n-passages`` passages of eval200, the
single-passage table's settings) several ways, one after another on an otherwise idle machine:

- *before*: the code of ``--before`` (default: the commit before issue 19's first change), checked out
  in a temporary git worktree and run as it was: torch's OpenMP defaults, in-process, all cores, one
  context's self-edit written at a time;
- *now, default*: this tree, no flags: ``--executor auto`` (one worker process of one thread per
  usable core), self-edits of several contexts written in one batch;
- *now, + bf16 weights*: the same with ``--dtype bfloat16`` (the frozen weights in bf16, the
  adapter and its optimiser in float32);
- *now, + bf16 weights + compile*: and ``--compile`` (torch.compile'd training steps; the compiler's
  disk cache is whatever earlier runs left, say which in the notes).

Reports wall time, inner loops (units) per hour and the accuracy table of each. The ways sample
different self-edits (the old code draws them another way; bf16 changes the numbers), so their
tables agree within noise or not. Appends to BENCHMARKS.md with ``--append``:

    python benchmarks/inner_loops_per_hour.py --n-passages 10 --append
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, SQUAD, command, git_revision, machine, publish

SEAL = "import sys; from seal_lm.cli import main; sys.exit(main())"
BEFORE = "88c9e2f^"  # the code when issue 19 was filed (its first change: thread hygiene, 88c9e2f)
WAYS = {  # name: (from the code of --before instead of this tree, extra flags)
    "before": (True, []),
    "now, default": (False, []),
    "now, + bf16 weights": (False, ["--dtype", "bfloat16"]),
    "now, + bf16 weights + compile": (False, ["--dtype", "bfloat16", "--compile"]),
}


def run(way: str, n_passages: int, out: Path, before_source: Path) -> tuple[float, dict]:
    """Wall seconds and results.json of one run."""
    args = ["eval", "knowledge", "--data", str(SQUAD / "eval200.json"), "--n-passages", str(n_passages)]
    old_code, extra = WAYS[way]
    args += ["--conditions", "self-edit", "--k", "1", "--out", str(out), *extra]
    environment = {
        k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
    }
    if old_code:
        environment["PYTHONPATH"] = str(before_source)  # ahead of the editable install of this tree
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", SEAL, *args], env=environment, check=True, capture_output=True)
    return time.perf_counter() - start, json.loads((out / "results.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-passages", type=int, default=10)
    parser.add_argument(
        "--ways", type=int, nargs="+", default=list(range(len(WAYS))), help="which ways to run, by position (0: before)"
    )
    parser.add_argument("--before", default=BEFORE, help="the git revision the before way runs")
    parser.add_argument("--append", action="store_true", help="append the section to BENCHMARKS.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="inner-loops-") as folder:
        worktree = Path(folder) / "before-code"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.before], check=True, cwd=REPO)
        try:
            for way in (list(WAYS)[i] for i in args.ways):
                out = Path(folder) / way.replace(", ", "-").replace(" ", "-").replace("+", "")
                wall, results = run(way, args.n_passages, out, worktree / "src")
                row = results["conditions"]["self-edit"]
                rows.append((way, wall, row))
                print(f"{way}: {wall:.0f} s, accuracy {row['accuracy']:.4f}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], check=True, cwd=REPO)
    base = rows[0][1]  # the first way run is the reference
    lines = [
        f"\n## Inner loops per hour: seal eval knowledge, the old default, the new, bf16 weights and --compile ({dt.date.today().isoformat()})\n",
        f"Command: `{command()}`. Machine: {machine()}. Nothing else ran. Each way runs `seal eval knowledge "
        f"--conditions self-edit --k 1 --n-passages {args.n_passages}` on eval200 (bundled model, LoRA q_proj,v_proj, "
        f"10 epochs): one inner loop per passage, its self-edit written first. *before* is the code of `{args.before}` "
        f"({git_revision(args.before)}).\n",
        "| way | wall | inner loops / hour | speed-up | accuracy | F1 |",
        "|---|---|---|---|---|---|",
    ]
    for way, wall, row in rows:
        units = row["units"]
        lines.append(
            f"| {way} | {wall:.0f} s | {units * 3600 / wall:.0f} | {base / wall:.2f}× | "
            f"{100 * row['accuracy']:.1f}% | {100 * row['f1']:.1f}% |"
        )
    publish("\n".join(lines) + "\n", args.append)


if __name__ == "__main__":
    main()
