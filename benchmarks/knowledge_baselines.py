"""Benchmark: the paper's single-passage conditions table on the bundled model.

Runs ``seal eval knowledge`` (base, passage, self-edit with the implications prompt, external =
GPT-4.1 self-edits) on the first N passages of SEAL's eval200 set, then appends the table, the
wall time per inner loop, peak RAM and the exact command to BENCHMARKS.md.

    python benchmarks/knowledge_baselines.py --n-passages 50 --out runs/bench-knowledge-50

The run directory is resumable: re-run the same command after an interruption.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import shlex
import sys
from pathlib import Path

from common import SQUAD, run_seal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-passages", type=int, default=50)
    parser.add_argument("--out", default="runs/bench-knowledge-50")
    parser.add_argument("--target-modules", default="all-linear")
    parser.add_argument("--extra", default="", help="More flags for seal eval knowledge, quoted.")
    args = parser.parse_args()
    seal_args = [
        "eval",
        "knowledge",
        "--data",
        str(SQUAD / "eval200.json"),
        "--n-passages",
        str(args.n_passages),
        "--conditions",
        "base,passage,self-edit,external",
        "--external",
        str(SQUAD / "self_edits_gpt41_eval200.json"),
        "--self-edit-prompt",
        "implications",
        "--k",
        "1",
        "--target-modules",
        args.target_modules,
        "--out",
        args.out,
        *shlex.split(args.extra),
    ]
    wall = run_seal(seal_args)
    peak_ram_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    records = [json.loads(line) for line in (Path(args.out) / "records.jsonl").read_text().splitlines()]
    inner = [r["train"]["seconds"] for r in records if r["train"]]
    table = (Path(args.out) / "results.md").read_text()
    section = f"""
## Knowledge incorporation, single passage: {args.n_passages} eval200 passages ({dt.date.today()})

Command: `python {" ".join(map(shlex.quote, sys.argv))}`
(= `seal {" ".join(map(shlex.quote, seal_args))}`)
Machine: {platform.machine()}, {__import__("os").cpu_count()} CPUs, {platform.python_version()}; wall time of this invocation
{wall / 60:.1f} min (a resumed run counts only the resumed part); peak RAM {peak_ram_gib:.2f} GiB;
inner-loop training time per adapter: mean {sum(inner) / max(len(inner), 1):.1f} s, max {max(inner, default=0):.1f} s over {len(inner)} adapters.

{table}"""
    with open(Path(__file__).resolve().parents[1] / "BENCHMARKS.md", "a") as f:
        f.write(section)
    print(section)


if __name__ == "__main__":
    main()
