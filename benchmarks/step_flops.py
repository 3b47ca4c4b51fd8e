"""Benchmark: achieved FLOP/s of one inner-loop training step against this machine's fp32 matmul peak.

The step is the inner loop's own (``InnerLoop.train_adapter``: a fresh LoRA adapter on the bundled
model, AdamW, batch 1, SEAL's settings) on one sequence of 30, 100 or 200 tokens, the lengths the
knowledge inner loop sees (a self-edit line, a long line, a passage). Its floating-point operations
are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and attention, forward and
backward); its time is the median step of ``--epochs`` steps after one warm-up plan. The peak is the
best ``torch.mm`` of square matrices (512-2048) at the same thread count, fp32 and bf16
(bf16 matmuls run on AMX tiles where the CPU has them). Run it on an idle
machine:

    python benchmarks/step_flops.py --threads 1,2 --append
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time

import torch
from common import command, machine, publish
from torch.utils.flop_counter import FlopCounterMode

from seal_lm import load_model
from seal_lm.adapt.lora import InnerLoop, InnerLoopSettings, TrainExample, TrainPlan

LENGTHS = (30, 100, 200)


def matmul_peak(dtype: torch.dtype, repeats: int = 5) -> float:
    """The best FLOP/s of a square ``torch.mm`` at the current thread count, over sizes 512 to 2048."""
    best = 0.0
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def plan_of(tokenizer, length: int, epochs: int, target_modules: tuple[str, ...]) -> TrainPlan:
    """One training sequence of exactly ``length`` tokens (random ids decoded to text), trained for ``epochs`` steps."""
    generator = torch.Generator().manual_seed(length)
    for _ in range(100):  # decoding then encoding random ids may change the count: draw until it holds
        ids = torch.randint(100, tokenizer.vocab_size, (length,), generator=generator).tolist()
        text = tokenizer.decode(ids)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) == length:
            break
    settings = InnerLoopSettings(epochs=epochs, target_modules=target_modules)
    return TrainPlan((TrainExample(text),), settings)


def step_flops(loop: InnerLoop, plan: TrainPlan) -> int:
    """Floating-point operations of one training step of ``plan`` (counted, not estimated)."""
    one_step = TrainPlan(plan.examples, InnerLoopSettings(**{**plan.settings.__dict__, "epochs": 1}))
    with FlopCounterMode(display=False) as counter:
        loop.train_adapter(one_step)
    return counter.get_total_flops()


def step_seconds(loop: InnerLoop, plan: TrainPlan) -> float:
    """Seconds per step of ``plan`` (its training time over its steps), the median of three runs after a warm-up."""
    loop.train_adapter(plan)  # warm-up: the adapter's first creation, allocator, kernels
    times = []
    for _ in range(3):
        stats = loop.train_adapter(plan)
        times.append(stats.seconds / stats.steps)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2", help="Comma-separated torch thread counts to measure.")
    parser.add_argument("--epochs", type=int, default=10, help="Steps per timed plan (three plans, median).")
    parser.add_argument(
        "--target-modules", default="q_proj,v_proj", help="LoRA targets (the default's, or all-linear)."
    )
    parser.add_argument("--append", action="store_true", help="Append the section to BENCHMARKS.md.")
    args = parser.parse_args()
    loaded = load_model()
    targets = tuple(args.target_modules.split(","))
    plans = {length: plan_of(loaded.tokenizer, length, args.epochs, targets) for length in LENGTHS}
    loops = {"fp32": InnerLoop(loaded.model, loaded.tokenizer)}
    flops = {length: step_flops(loops["fp32"], plan) for length, plan in plans.items()}
    loops["bf16 autocast"] = InnerLoop(loops["fp32"].release(), loaded.tokenizer, compute_dtype=torch.bfloat16)
    bf16_model = load_model(dtype="bfloat16").model  # --dtype bfloat16
    loops["bf16 weights"] = InnerLoop(bf16_model, loaded.tokenizer)
    loops["fp32 + compile"] = InnerLoop(loops["bf16 autocast"].release(), loaded.tokenizer, compile=True)
    loops["bf16 weights + compile"] = InnerLoop(bf16_model, loaded.tokenizer, compile=True)
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        fp32, bf16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
        rows.append(f"| {threads} | fp32 | matmul peak | | {fp32 / 1e9:.0f} | 100% | 100% |")
        rows.append(f"| {threads} | bf16 | matmul peak | | {bf16 / 1e9:.0f} | 100% | {bf16 / fp32:.0%} |")
        for compute, loop in loops.items():
            peak = bf16 if compute.startswith("bf16") else fp32
            for length, plan in plans.items():
                seconds = step_seconds(loop, plan)
                achieved = flops[length] / seconds
                rows.append(
                    f"| {threads} | {compute} | training step, {length} tokens ({flops[length] / 1e9:.1f} GFLOP) "
                    f"| {seconds * 1000:.0f} ms | {achieved / 1e9:.0f} | {achieved / peak:.0%} "
                    f"| {achieved / fp32:.0%} |"
                )
            loop.release()
    table = "\n".join(rows)
    section = f"""
## Inner loop: achieved FLOP/s of a training step vs the fp32 matmul peak ({dt.date.today()})

Command: `{command()}`. Machine: {machine()}. Nothing else ran.
One step of `InnerLoop.train_adapter` (bundled SmolLM2-135M, fp32, LoRA rank 32 on {args.target_modules},
AdamW, batch 1), in fp32, under bf16 autocast (`--compute-dtype bfloat16`) and with the frozen weights
stored in bf16 (`--dtype bfloat16`; PEFT keeps the adapter in fp32), and fp32 and bf16 weights with
`--compile` (torch.compile'd steps; the compile is the warm-up plan's and is not timed): FLOPs counted by
`torch.utils.flop_counter.FlopCounterMode`, time the median of three {args.epochs}-step plans after a warm-up.

| threads | compute | what | time per step | GFLOP/s | share of its dtype's peak | share of fp32 peak |
|---|---|---|---|---|---|---|
{table}
"""
    publish(section, append=args.append)


if __name__ == "__main__":
    main()
