"""Benchmark: ``seal demo`` alone and beside other busy ``seal`` jobs, with today's and the old thread behaviour.

Each cell times one ``seal demo`` (a fresh process: model load, answers, self-edit, LoRA training,
answers) while 0, 1 or 2 other ``seal demo`` processes run in a loop beside it on the same cores
(they are stopped when the timed one ends). Two behaviours, the busy jobs always the same as the timed one:

- *before*: the OpenMP runtime as torch starts it (``torch`` imported before ``seal_lm``, so idle
  threads spin 300,000 times before sleeping, libgomp's default), every process on all cores;
- *now*: the toolkit's default (``seal_lm`` imported first: ``OMP_WAIT_POLICY=PASSIVE``, ``GOMP_SPINCOUNT=3000``), ``--threads`` default.

The target (issue 19): beside two other jobs, at most 4× the idle time. Appends the table to
BENCHMARKS.md with ``--append``:

    python benchmarks/cpu_contention.py --append
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import time

from common import command, machine, publish

BEHAVIOURS = {  # how a seal process starts: the code that runs `seal` with sys.argv
    "before": "import torch, sys; from seal_lm.cli import main; sys.exit(main())",  # torch first: its OpenMP runtime keeps its default wait policy
    "now": "import sys; from seal_lm.cli import main; sys.exit(main())",
}
BUSY_LOOP = (
    "import sys; {start}\nwhile True:\n    main(sys.argv[1:])"  # a busy job: seal demo again and again, until stopped
)


def demo_args(epochs: int) -> list[str]:
    return ["demo", "--epochs", str(epochs)]


def environment() -> dict[str, str]:
    """This process's environment without the settings under test (each behaviour sets its own)."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
    }


def timed_demo(behaviour: str, busy: int, epochs: int) -> tuple[float, float]:
    """Wall seconds of one ``seal demo`` and its training seconds, beside ``busy`` looping copies."""
    start_code = BEHAVIOURS[behaviour].replace("sys.exit(main())", "")
    others = [
        subprocess.Popen(
            [sys.executable, "-c", BUSY_LOOP.format(start=start_code), *demo_args(epochs)],
            env=environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(busy)
    ]
    try:
        time.sleep(10 if busy else 0)  # the busy jobs are past their model load, computing
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", BEHAVIOURS[behaviour], *demo_args(epochs)],
            env=environment(),
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - start
    finally:
        for other in others:
            other.kill()
            other.wait()
    trained = re.search(r"Trained \d+ steps in (\d+) s", done.stdout)
    return wall, float(trained.group(1)) if trained else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, default=10, help="seal demo --epochs (10: the demo's 60 steps; fewer for a quick check)"
    )
    parser.add_argument("--busy", default="0,1,2", help="numbers of busy jobs beside the timed one")
    parser.add_argument("--append", action="store_true", help="append the section to BENCHMARKS.md")
    args = parser.parse_args()
    busy_counts = [int(n) for n in args.busy.split(",")]

    results = {}
    for behaviour in BEHAVIOURS:
        for busy in busy_counts:
            results[behaviour, busy] = timed_demo(behaviour, busy, args.epochs)
            wall, train = results[behaviour, busy]
            print(f"{behaviour}, beside {busy}: {wall:.0f} s wall, {train:.0f} s training", file=sys.stderr)

    def cell(behaviour: str, busy: int) -> str:
        wall, train = results[behaviour, busy]
        alone_wall, alone_train = results.get((behaviour, 0), (wall, train))
        return f"{wall:.0f} s ({wall / alone_wall:.1f}×) | {train:.0f} s ({train / alone_train:.1f}×)"

    rows = "\n".join(f"| {busy} | {cell('before', busy)} | {cell('now', busy)} |" for busy in busy_counts)
    section = f"""
## CPU contention: `seal demo` alone and beside busy `seal` jobs, before and now ({dt.date.today()})

Command: `{command()}`. Machine: {machine()}; {len(os.sched_getaffinity(0))} usable cores.
Timed: one `seal {" ".join(demo_args(args.epochs))}` in a fresh process; beside it, that many copies of the
same command running in a loop. *before*: torch's OpenMP runtime as it starts (idle threads spin before
sleeping), all cores per process; *now*: seal-lm's default (`OMP_WAIT_POLICY=PASSIVE`, `GOMP_SPINCOUNT=3000`,
`--threads` default).
In brackets: the time against the same behaviour alone. Target: beside 2 jobs, at most 4× alone.

| busy jobs beside | before: wall | before: training | now: wall | now: training |
|---|---|---|---|---|
{rows}
"""
    publish(section, args.append)


if __name__ == "__main__":
    main()
