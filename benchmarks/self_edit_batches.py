"""Benchmark: writing self-edits one context at a time vs several contexts in one batched generation.

Writes the self-edits of the first ``--n-passages`` eval200 passages (bundled model, the
implications prompt, 320 tokens, T=0.7, top-p 0.95, k=1) in batches of 1, 2, 4 and 8 contexts, on one
thread, and reports the seconds per context. Each prompt samples from its own seeded generator, so
every batching should write the same self-edits; the script checks it and reports how many differ
(floating-point noise of batched arithmetic can tip a draw).

    python benchmarks/self_edit_batches.py --append
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import torch
from common import SQUAD, command, machine, publish

from seal_lm import load_model
from seal_lm.adapt.lora import InnerLoop
from seal_lm.domains.knowledge.data import load_passages
from seal_lm.domains.knowledge.domain import KnowledgeDomain
from seal_lm.loops.self_edits import sample_self_edits_of_many
from seal_lm.model.generation import GenerationSettings
from seal_lm.model.prompting import PromptFormatter

SETTINGS = GenerationSettings(max_new_tokens=320, temperature=0.7, top_p=0.95, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-passages", type=int, default=8)
    parser.add_argument("--append", action="store_true", help="append the section to BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = load_model()
    inner_loop = InnerLoop(loaded.model, loaded.tokenizer)
    domain = KnowledgeDomain(PromptFormatter(loaded.tokenizer, loaded.chat))
    passages = load_passages(SQUAD / "eval200.json")[: args.n_passages]
    rows, reference = [], None
    for per_batch in (1, 2, 4, 8):
        start = time.perf_counter()
        written = [
            generations[0]
            for i in range(0, len(passages), per_batch)
            for _, generations in sample_self_edits_of_many(
                inner_loop, domain, passages[i : i + per_batch], 1, SETTINGS
            )
        ]
        seconds = time.perf_counter() - start
        reference = reference or written
        differ = sum(a != b for a, b in zip(written, reference))
        rows.append((per_batch, seconds, written, differ))
        print(f"{per_batch} per batch: {seconds:.1f} s", flush=True)
    one = rows[0][1]
    lines = [
        f"\n## Writing self-edits: one context at a time vs several in one batch ({dt.date.today().isoformat()})\n",
        f"Command: `{command()}`. Machine: {machine()}; one thread, nothing else ran. The self-edits of the first "
        f"{len(passages)} eval200 passages (bundled model, implications, 320 tokens, T=0.7, top-p 0.95, k=1).\n",
        "| contexts per batch | seconds | per context | speed-up | tokens written | cut at 320 | self-edits unlike one-at-a-time |",
        "|---|---|---|---|---|---|---|",
    ]
    for per_batch, seconds, written, differ in rows:
        lines.append(
            f"| {per_batch} | {seconds:.1f} | {seconds / len(passages):.1f} | {one / seconds:.2f}× | "
            f"{sum(g.tokens for g in written)} | {sum(g.truncated for g in written)} | {differ} |"
        )
    publish("\n".join(lines) + "\n", args.append)


if __name__ == "__main__":
    main()
