"""Benchmark: what ``--executor ray`` costs on top of the jobs themselves.

Measures, on a local Ray: starting Ray; starting a worker (a Ray actor: process start and imports)
and building its replica (model load, domain, inner-loop engine) for the tiny random test model and
for the bundled model; and the dispatch overhead per job (a job that does nothing, on a warm worker,
against the same job in-process). Appends the numbers to BENCHMARKS.md.

    python benchmarks/executor_overheads.py --jobs 200
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import ray

from seal_lm.cli.shared_options import ModelOptions
from seal_lm.domains.knowledge.domain import KnowledgeDomain
from seal_lm.runs.executor import InProcessExecutor, RayExecutor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import build_model, build_tokenizer  # noqa: E402  (the tests' tiny random Llama)


def nothing(worker, item):
    return item


def no_worker():
    return None


def seconds_to_first_result(executor, setup) -> float:
    start = time.perf_counter()
    next(iter(executor.run(setup, nothing, [0])))
    return time.perf_counter() - start


def per_job(executor, jobs: int) -> float:
    """Seconds per job once the worker is up: the time for ``jobs`` + 1 jobs minus that for 1, per job."""
    one = seconds_to_first_result(executor, no_worker)
    start = time.perf_counter()
    assert len(list(executor.run(no_worker, nothing, range(jobs + 1)))) == jobs + 1
    return (time.perf_counter() - start - one) / jobs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    tiny = Path(tempfile.mkdtemp(prefix="tiny-llama-"))
    tokenizer = build_tokenizer()
    build_model(len(tokenizer)).save_pretrained(tiny)
    tokenizer.save_pretrained(tiny)
    models = {"tiny random Llama": str(tiny), "bundled SmolLM2-135M": ModelOptions().model}

    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
    ray_start = time.perf_counter() - start
    executor = RayExecutor(workers=1)
    actor_start = seconds_to_first_result(executor, no_worker)
    replica = {
        name: seconds_to_first_result(executor, partial(ModelOptions(model=spec).worker, KnowledgeDomain))
        for name, spec in models.items()
    }
    in_process_load = {}
    for name, spec in models.items():
        start = time.perf_counter()
        ModelOptions(model=spec).worker(KnowledgeDomain)
        in_process_load[name] = time.perf_counter() - start
    dispatch = per_job(executor, args.jobs)
    local = per_job(InProcessExecutor(), args.jobs)

    rows = [
        f"| start a local Ray (`ray.init`) | {ray_start:.1f} s |",
        f"| start a worker, no model (Ray actor: process start, imports) | {actor_start:.1f} s |",
        *(
            f"| start a worker and build its replica: {name} | {replica[name]:.1f} s (in-process build: {in_process_load[name]:.1f} s) |"
            for name in models
        ),
        f"| dispatch a job to a warm worker and get its result | {dispatch * 1000:.1f} ms (in-process: {local * 1e6:.1f} µs) |",
    ]
    section = f"""
## Ray executor overheads ({dt.date.today()})

Command: `python {" ".join(sys.argv)}`. Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python
{platform.python_version()}, Ray {ray.__version__}, local Ray; one worker at a time; a no-op job
for dispatch ({args.jobs} jobs).

| what | time |
|---|---|
{chr(10).join(rows)}
"""
    ray.shutdown()
    with open(Path(__file__).resolve().parents[1] / "BENCHMARKS.md", "a") as f:
        f.write(section)
    print(section)


if __name__ == "__main__":
    main()
