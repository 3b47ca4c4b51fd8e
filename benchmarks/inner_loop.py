"""Benchmark: the inner loop, k=5 candidate self-edits of one passage, reference style vs ours.

A (reference): the SEAL code path, one candidate at a time: a fresh PEFT LoRA model, HF ``Trainer``
  (batch 1, 10 epochs, lr 1e-3, linear decay), fp32, then a separate generation per candidate.
  (SEAL's script also padded every sequence to 2048 tokens and took the loss on the padding; we use
  dynamic padding instead, which makes A faster than the original, not slower.)
B (ours): ``BatchedInnerLoop``, the 5 candidates trained (packed, padding-free) and answered together,
  once with float32 weights and once with bfloat16 weights (adapters and optimiser in float32).
C (GPU, ``--runs ...,vllm:bfloat16``): ``VLLMInnerLoop``, PEFT training one candidate at a time and
  the answers of all candidates in one vLLM call, each with its adapter (needs vLLM and CUDA).

Both answer the passage's questions after training; the candidates are the 5 GPT-4.1 self-edits of
eval200 passage 0, parsed our way (lines + the passage). Each side runs in its own process so that
its peak RAM is its own. Appends the result to BENCHMARKS.md:

    python benchmarks/inner_loop.py                                   # A and B in float32 and bfloat16
    python benchmarks/inner_loop.py --runs reference:float32,ours:float32  # where bf16 is slow (CPUs without AMX/AVX-512 bf16)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from seal_lm import InnerLoopSettings, KnowledgeDomain, PromptFormatter, TrainPlan, load_model, load_passages
from seal_lm.adapt.batched import BatchedInnerLoop
from seal_lm.adapt.vllm_engine import VLLMInnerLoop
from seal_lm.domains.knowledge.data import load_external_self_edits
from seal_lm.model.loading import DEFAULT_MODEL, DTYPES, resolve_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad"
SETTINGS = InnerLoopSettings(
    target_modules=("all-linear",)
)  # the paper's values otherwise (r32, a64, lr 1e-3, 10 ep, bs 1)


def candidates(domain: KnowledgeDomain, passage, k: int) -> list[TrainPlan]:
    completions = load_external_self_edits(SHARED / "self_edits_gpt41_eval200.json")[passage.context.strip()][:k]
    plans = [domain.parse_self_edit(passage, text) for text in completions]
    return [TrainPlan(plan.examples, SETTINGS) for plan in plans]


def run_reference(model, tokenizer, plans, prompts, generation) -> tuple[list[list[str]], int]:
    """One candidate at a time through PEFT + HF Trainer, as SEAL's TTT server does."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from seal_lm.model.generation import generate

    answers, tokens = [], 0
    for index, plan in enumerate(plans):
        rows = []
        for example in plan.examples:
            ids = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
            rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)})
            tokens += (len(ids) - 1) * plan.settings.epochs
        config = LoraConfig(
            r=SETTINGS.rank,
            lora_alpha=SETTINGS.alpha,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
        lora_model = get_peft_model(model, config)
        trainer = Trainer(
            model=lora_model,
            args=TrainingArguments(
                output_dir=f"/tmp/seal-reference-{index}",
                per_device_train_batch_size=1,
                num_train_epochs=SETTINGS.epochs,
                learning_rate=SETTINGS.lr,
                logging_steps=1,
                save_strategy="no",
                report_to="none",
                remove_unused_columns=False,
                seed=index,
                disable_tqdm=True,
            ),
            train_dataset=Dataset.from_list(rows),
            data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True),
        )
        trainer.train()
        lora_model.eval()
        answers.append([g.text for g in generate(lora_model, tokenizer, prompts, generation)])
        model = lora_model.unload()
    return answers, tokens


def run_ours(model, tokenizer, plans, prompts, generation) -> tuple[list[list[str]], int]:
    results = BatchedInnerLoop(model, tokenizer).train_and_answer(plans, prompts, generation)
    return [[g.text for g in r.answers] for r in results], sum(r.stats.tokens for r in results)


def run_vllm(model, tokenizer, plans, prompts, generation) -> tuple[list[list[str]], int]:
    engine = VLLMInnerLoop(model, tokenizer, resolve_model(DEFAULT_MODEL), max_lora_rank=SETTINGS.rank)
    results = engine.train_and_answer(plans, prompts, generation)
    return [[g.text for g in r.answers] for r in results], sum(r.stats.tokens for r in results)


RUNNERS = {"reference": run_reference, "ours": run_ours, "vllm": run_vllm}


def measure(side: str, k: int, dtype: str) -> dict:
    loaded = load_model(dtype=dtype)
    domain = KnowledgeDomain(PromptFormatter(loaded.tokenizer, loaded.chat))
    passage = load_passages(SHARED / "eval200.json")[0]
    plans = candidates(domain, passage, k)
    prompts = domain.probe_prompts(passage)
    generation = domain.answer_generation
    start = time.perf_counter()
    answers, trained_tokens = RUNNERS[side](loaded.model, loaded.tokenizer, plans, prompts, generation)
    seconds = time.perf_counter() - start
    correct = [sum(g["correct"] for g in domain.score(passage, a)) for a in answers]
    prompt_tokens = sum(len(loaded.tokenizer(p)["input_ids"]) for p in prompts) * k
    answer_tokens = sum(len(loaded.tokenizer(a)["input_ids"]) for group in answers for a in group)
    params = sum(p.numel() for p in loaded.model.parameters())
    flops = 4 * params * trained_tokens + 2 * params * (prompt_tokens + answer_tokens)
    return {
        "side": side,
        "dtype": dtype,
        "seconds": seconds,
        "correct_per_candidate": correct,
        "questions": len(prompts),
        "trained_tokens": trained_tokens,
        "flops": flops,
        "peak_ram_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


def matmul_peak(dtype: str, size: int = 2048, repeats: int = 10) -> float:
    """Achieved matmul FLOP/s in ``dtype`` on this machine (the best of ``repeats``)."""
    a, b = torch.randn(size, size, dtype=DTYPES[dtype]), torch.randn(size, size, dtype=DTYPES[dtype])
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


LABELS = {
    "reference": "A: reference (PEFT + Trainer, one at a time)",
    "ours": "B: ours (batched engine)",
    "vllm": "C: ours (PEFT training, vLLM answers)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", choices=[*RUNNERS, "all"], default="all")
    parser.add_argument(
        "--runs",
        default="reference:float32,ours:float32,ours:bfloat16",
        help="SIDE:DTYPE pairs run by --side all; the first is the reference of the speed-ups.",
    )
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32", help="weights' dtype of one --side")
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()
    if args.side != "all":
        print(json.dumps(measure(args.side, args.k, args.dtype)))
        return
    results = []
    for side, dtype in (run.split(":") for run in args.runs.split(",")):
        command = [sys.executable, __file__, "--side", side, "--dtype", dtype, "--k", str(args.k)]
        output = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append(json.loads(output.stdout.strip().splitlines()[-1]))
    peaks = {dtype: matmul_peak(dtype) for dtype in {r["dtype"] for r in results}}
    reference = results[0]
    rows = "\n".join(
        f"| {LABELS[r['side']]}, {r['dtype']} | {r['seconds']:.1f} | {reference['seconds'] / r['seconds']:.2f}× | {r['correct_per_candidate']} "
        f"| {r['trained_tokens']} | {r['flops'] / r['seconds'] / 1e9:.1f} | {r['flops'] / r['seconds'] / peaks[r['dtype']]:.0%} | {r['peak_ram_gib']:.2f} |"
        for r in results
    )
    section = f"""
## Inner loop: {args.k} candidate self-edits of one passage, reference style vs ours ({dt.date.today()})

Command: `python benchmarks/inner_loop.py --k {args.k} --runs {args.runs}`. Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"},
bundled SmolLM2-135M, LoRA r32/α64 on all linear layers, lr 1e-3, 10 epochs, batch 1; candidates = the
GPT-4.1 self-edits of eval200 passage 0; {reference["questions"]} questions answered per candidate.

| | wall time (s) | speed-up vs A | correct per candidate | trained tokens | achieved GFLOP/s | share of matmul peak (same dtype) | peak RAM (GiB) |
|---|---|---|---|---|---|---|---|
{rows}

Matmul peak measured here (2048², best of 10): {", ".join(f"{d} {p / 1e9:.0f} GFLOP/s" for d, p in peaks.items())}.
FLOPs counted as 4·params·trained tokens + 2·params·(prompt + answer tokens).
"""
    with open(Path(__file__).resolve().parents[1] / "BENCHMARKS.md", "a") as f:
        f.write(section)
    print(section)


if __name__ == "__main__":
    main()
