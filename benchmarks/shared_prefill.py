"""Benchmark: sampling k self-edits of one passage with the prompt prefilled once vs once per sample.

The k samples of a context share their prompt; ``generate`` prefills it once and repeats its KV cache
for the batch (``keep_order=True`` turns that off, so both variants run the same code otherwise).
Bundled model, eval200 passage 0, the implications prompt, T=0.7, 320 new tokens; median of
interleaved repeats.

    python benchmarks/shared_prefill.py --k 4 --repeats 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time

import torch
from common import SQUAD, command, machine, publish

from seal_lm.domains.knowledge.data import load_passages
from seal_lm.domains.knowledge.domain import KnowledgeDomain
from seal_lm.model.generation import GenerationSettings, generate
from seal_lm.model.loading import load_model
from seal_lm.model.prompting import PromptFormatter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=320)
    parser.add_argument("--no-append", action="store_true", help="Print the section only; leave BENCHMARKS.md alone.")
    args = parser.parse_args()
    loaded = load_model()
    domain = KnowledgeDomain(PromptFormatter(loaded.tokenizer, loaded.chat))
    prompt = domain.self_edit_prompt(load_passages(SQUAD / "eval200.json")[0])
    prompt_tokens = len(loaded.tokenizer(prompt)["input_ids"])
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=0.7, top_p=0.95, batch_size=args.k)
    seconds = {"prefilled once": [], "prefilled per sample": []}
    tokens = {}
    for _ in range(args.repeats):
        for label, keep_order in (("prefilled once", False), ("prefilled per sample", True)):
            start = time.perf_counter()
            outputs = generate(loaded.model, loaded.tokenizer, [prompt] * args.k, settings, keep_order=keep_order)
            seconds[label].append(time.perf_counter() - start)
            tokens[label] = sum(o.tokens for o in outputs)
    baseline = statistics.median(seconds["prefilled per sample"])
    rows = "\n".join(
        f"| {label} | {statistics.median(times):.1f} | {tokens[label]} | {baseline / statistics.median(times):.2f}× |"
        for label, times in seconds.items()
    )
    publish(
        f"""
## Sampling k={args.k} self-edits of one passage: prompt prefilled once vs per sample ({dt.date.today()})

Command: `{command()}`. Machine: {machine()}; torch threads: {torch.get_num_threads()}.
Prompt: {prompt_tokens} tokens (eval200 passage 0, implications); up to {args.max_new_tokens} new tokens per sample, T=0.7; median of {args.repeats}.

| variant | seconds | tokens generated (last repeat) | speed-up |
|---|---|---|---|
{rows}
""",
        append=not args.no_append,
    )


if __name__ == "__main__":
    main()
