"""Benchmark: how usable are the bundled model's self-edits at different sampling temperatures?

For the first N eval200 passages, samples one implications self-edit per passage at each
temperature and counts parsed items, truncations and rejections; appends the table to BENCHMARKS.md.

    python benchmarks/self_edit_temperature.py --n-passages 16
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
from pathlib import Path

from seal_lm import (
    GenerationSettings,
    KnowledgeDomain,
    PromptFormatter,
    SelfEditRejected,
    generate,
    load_model,
    load_passages,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-passages", type=int, default=16)
    parser.add_argument("--temperatures", default="1.0,0.7,0.0")
    parser.add_argument("--max-tokens", type=int, default=320)
    args = parser.parse_args()
    loaded = load_model()
    domain = KnowledgeDomain(PromptFormatter(loaded.tokenizer, loaded.chat))
    passages = load_passages(SHARED / "eval200.json")[: args.n_passages]
    prompts = [domain.self_edit_prompt(p) for p in passages]
    rows = [
        "| temperature | mean items | passages with ≥5 items | truncated | rejected | mean tokens |",
        "|---|---|---|---|---|---|",
    ]
    for temperature in map(float, args.temperatures.split(",")):
        settings = GenerationSettings(max_new_tokens=args.max_tokens, temperature=temperature, top_p=0.95)
        edits = generate(loaded.model, loaded.tokenizer, prompts, settings)
        items, rejected = [], 0
        for passage, edit in zip(passages, edits):
            try:
                items.append(len(domain.parse_self_edit(passage, edit.text, edit.truncated).examples) - 1)
            except SelfEditRejected:
                items.append(0)
                rejected += 1
        rows.append(
            f"| {temperature} | {statistics.fmean(items):.1f} | {sum(i >= 5 for i in items)}/{len(items)} | "
            f"{sum(e.truncated for e in edits)} | {rejected} | {statistics.fmean(e.tokens for e in edits):.0f} |"
        )
    section = (
        f"\n## Self-edit usability by sampling temperature, {args.n_passages} eval200 passages ({dt.date.today()})\n\n"
        f"Command: `python {' '.join(sys.argv)}` (bundled model, implications prompt, budget {args.max_tokens} tokens)\n\n"
        + "\n".join(rows)
        + "\n"
    )
    with open(Path(__file__).resolve().parents[1] / "BENCHMARKS.md", "a") as f:
        f.write(section)
    print(section)


if __name__ == "__main__":
    main()
