"""Benchmark: one packed training step of the batched engine, with and without its packed-row operations.

A row packs one 200-token passage and four 30–45-token self-edit lines (a typical step of 5 candidates).
Forward and backward through the bundled model (frozen, as in the inner loop), timed four ways:
attention over the whole row behind transformers' block-diagonal mask or within each sequence
(``per_sequence_attention``), and the loss through the full output layer + ``F.cross_entropy`` or
through ``frozen_head_token_losses``. The four are interleaved over ``--repeats`` rounds, so a busy
machine slows them alike; medians are reported and appended to BENCHMARKS.md:

    python benchmarks/packed_step.py
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import statistics
import time

import torch
import torch.nn.functional as F
from common import command, machine, publish

from seal_lm import load_model
from seal_lm.adapt.packed_ops import frozen_head_token_losses, per_sequence_attention, sequence_boundaries

LENGTHS = [200, 40, 35, 30, 45]


def step(model, ids, positions, per_sequence: bool, fused: bool) -> None:
    """Forward and backward of one packed row (gradients flow to the input embeddings, as to LoRA inputs)."""
    embeddings = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    with per_sequence_attention(model) if per_sequence else contextlib.nullcontext():
        hidden = model.base_model(
            inputs_embeds=embeddings,
            position_ids=positions,
            cu_seq_lens_q=sequence_boundaries(positions, model),
            use_cache=False,
        ).last_hidden_state[0, :-1]
    head, targets = model.get_output_embeddings(), ids[0, 1:]
    losses = (
        frozen_head_token_losses(hidden, head, targets)
        if fused
        else F.cross_entropy(head(hidden).float(), targets, reduction="none")
    )
    losses.mean().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-append", action="store_true", help="Print the section only; leave BENCHMARKS.md alone.")
    args = parser.parse_args()
    model = load_model().model.requires_grad_(False)
    torch.manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (1, sum(LENGTHS)))
    positions = torch.cat([torch.arange(n) for n in LENGTHS])[None]
    variants = [(per_sequence, fused) for per_sequence in (False, True) for fused in (False, True)]
    seconds: dict[tuple[bool, bool], list[float]] = {variant: [] for variant in variants}
    step(model, ids, positions, True, True)  # warm-up
    for _ in range(args.repeats):
        for variant in variants:
            start = time.perf_counter()
            step(model, ids, positions, *variant)
            seconds[variant].append(time.perf_counter() - start)
    baseline = statistics.median(seconds[(False, False)])
    rows = "\n".join(
        f"| {'within each sequence' if per_sequence else 'whole row, block mask'} | {'chunked, frozen head' if fused else 'full logits + cross_entropy'} "
        f"| {statistics.median(seconds[(per_sequence, fused)]):.2f} | {baseline / statistics.median(seconds[(per_sequence, fused)]):.2f}× |"
        for per_sequence, fused in variants
    )
    section = f"""
## Inner loop: one packed step, with and without the packed-row operations ({dt.date.today()})

Command: `{command()}`. Machine: {machine()}; {torch.get_num_threads()} torch threads.
Bundled SmolLM2-135M (fp32, frozen), one row of {len(LENGTHS)} sequences ({" + ".join(map(str, LENGTHS))} tokens), forward + backward;
median of {args.repeats} interleaved repeats.

| attention | loss | seconds | speed-up |
|---|---|---|---|
{rows}
"""
    publish(section, append=not args.no_append)


if __name__ == "__main__":
    main()
