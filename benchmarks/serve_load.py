"""Benchmark: ``seal serve`` on the bundled model, under load over loopback, idle and while it learns.

For each thread layout (``--layouts``: compute threads answering + learning), starts ``seal serve`` on a
new run and measures:
- chat latency p50/p95 and requests/s at each ``--clients`` level (each client sends
  ``--requests-per-client`` greedy chat requests of ``--max-tokens`` tokens, one after another), on an
  idle server and while a document is being learned;
- seconds from ``POST /v1/documents`` to the new version, idle and under the load above;
- the server's resident memory with 1 version loaded, and (first layout only) with 10, on a second
  server that learns 9 short documents cheaply (the memory of a version does not depend on how it was trained).

    python benchmarks/serve_load.py --append
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
from common import command, machine, publish

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "seal_lm" / "data" / "sample_passages.json"
QUESTION = "What is the capital of France? Answer in one sentence."


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def server(run: Path, extra: list[str]) -> Iterator[tuple[str, int]]:
    """``seal serve`` in a subprocess on a free loopback port; yields (URL, pid); stopped with SIGTERM."""
    port = free_port()
    log = open(run.parent / f"{run.name}.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "seal_lm",
            "serve",
            "--run",
            str(run),
            "--port",
            str(port),
            "--allow-unauthenticated-writes",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx2.TransportError):
                if httpx2.get(f"{url}/health").status_code == 200:
                    break
            if process.poll() is not None:
                raise SystemExit(f"seal serve exited: see {log.name}")
            time.sleep(0.5)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(120)


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def chat(url: str, max_tokens: int, model: str = "seal") -> float:
    start = time.perf_counter()
    response = httpx2.post(
        f"{url}/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": max_tokens,
            "temperature": 0,
        },
        timeout=600,
    )
    response.raise_for_status()
    return time.perf_counter() - start


def load(url: str, clients: int, requests_per_client: int, max_tokens: int) -> dict[str, float]:
    """``clients`` concurrent clients, each sending its requests one after another: latency p50/p95 and requests/s."""
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [
            t
            for ts in pool.map(lambda _: [chat(url, max_tokens) for _ in range(requests_per_client)], range(clients))
            for t in ts
        ]
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(latencies),
        "p50": statistics.median(latencies),
        "p95": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))],
        "per_second": len(latencies) / wall,
    }


def post(url: str, passage: dict) -> str:
    document = {
        "title": passage["title"],
        "text": passage["context"],
        "questions": [{"question": q["question"], "answers": [q["answer"]]} for q in passage["questions"]],
    }
    response = httpx2.post(f"{url}/v1/documents", json=document)
    response.raise_for_status()
    return response.json()["id"]


def document(url: str, document_id: str) -> dict:
    return httpx2.get(f"{url}/v1/documents/{document_id}").json()


def wait(url: str, document_id: str, statuses: tuple[str, ...]) -> dict:
    while (shown := document(url, document_id))["status"] not in statuses:
        time.sleep(0.2)
    return shown


def learning_seconds(shown: dict) -> float:
    """From the POST (submitted) to the decision (finished), as the server recorded them."""
    return (
        dt.datetime.fromisoformat(shown["finished"]) - dt.datetime.fromisoformat(shown["submitted"])
    ).total_seconds()


def measure_layout(layout: str, args, passages: list[dict], workdir: Path) -> dict:
    serve_threads, learn_threads = layout.split("+")
    extra = ["--serve-threads", serve_threads, "--learn-threads", learn_threads, "--model", args.model]
    result: dict = {"layout": layout}
    with server(workdir / f"run-{layout}", extra) as (url, pid):
        chat(url, args.max_tokens)  # warm up
        result["memory_1"] = resident_mib(pid)
        result["idle"] = [load(url, c, args.requests_per_client, args.max_tokens) for c in args.clients]
        result["learn_idle"] = learning_seconds(wait(url, post(url, passages[0]), ("accepted", "rejected", "failed")))
        busy, overlapped = [], []
        queued = [post(url, passage) for passage in passages[1:]]
        wait(url, queued[0], ("learning",))
        for clients in args.clients:
            busy.append(load(url, clients, args.requests_per_client, args.max_tokens))
            overlapped.append(httpx2.get(f"{url}/health").json()["learning"] is not None)
        result["busy"], result["busy_overlapped"] = busy, overlapped
        result["learn_busy"] = learning_seconds(wait(url, queued[0], ("accepted", "rejected", "failed")))
        for document_id in queued[1:]:
            wait(url, document_id, ("accepted", "rejected", "failed"))
    return result


def memory_with_versions(workdir: Path, versions: int, model: str) -> tuple[float, float]:
    """Resident MiB with 1 and with ``versions`` versions loaded (cheap documents: 1 epoch, gold probes)."""
    extra = [
        "--model",
        model,
        "--epochs",
        "1",
        "--self-edit-max-tokens",
        "16",
        "--probes",
        "gold",
        "--answer-max-tokens",
        "8",
        "--max-loaded-versions",
        str(versions),
        "--min-gain",
        "-1",
    ]
    with server(workdir / "run-memory", extra) as (url, pid):
        chat(url, 4)
        one = resident_mib(pid)
        for n in range(versions - 1):
            passage = {
                "title": f"Note {n}",
                "context": f"Note {n}: the code word is item{n}.",
                "questions": [{"question": "What is the code word?", "answer": f"item{n}"}],
            }
            wait(url, post(url, passage), ("accepted", "rejected", "failed"))
        models = [m["id"] for m in httpx2.get(f"{url}/v1/models").json()["data"] if m["id"] != "seal"]
        for model in models:
            chat(url, 4, model)
        return one, resident_mib(pid) if len(models) == versions else float("nan")


def section(results: list[dict], memory: tuple[float, float] | None, args, minutes: float) -> str:
    lines = [
        f"\n## seal serve under load, {args.model} ({dt.date.today().isoformat()})\n",
        f"Command: `{command()}`. Machine: {machine()}. "
        f"Nothing else ran. Each client sends {args.requests_per_client} greedy chat requests of {args.max_tokens} tokens "
        f"one after another; 'learning' = while the server learns a sample passage (k=1, 10 epochs, LoRA q_proj,v_proj). "
        f"Layout = compute threads answering + learning. Wall time {minutes:.1f} min.\n",
        "| layout | clients | idle p50 s | idle p95 s | idle req/s | learning p50 s | learning p95 s | learning req/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for idle, busy, overlapped in zip(result["idle"], result["busy"], result["busy_overlapped"]):
            flag = "" if overlapped else " (learning ended during it)"
            lines.append(
                f"| {result['layout']} | {idle['clients']} | {idle['p50']:.2f} | {idle['p95']:.2f} | {idle['per_second']:.2f} | "
                f"{busy['p50']:.2f} | {busy['p95']:.2f} | {busy['per_second']:.2f}{flag} |"
            )
    lines.append("")
    for result in results:
        lines.append(
            f"- layout {result['layout']}: POST → new version {result['learn_idle']:.0f} s on an idle server, "
            f"{result['learn_busy']:.0f} s under the load above; resident memory {result['memory_1']:.0f} MiB with 1 version."
        )
    if memory:
        lines.append(
            f"- memory: {memory[0]:.0f} MiB with 1 version loaded, {memory[1]:.0f} MiB with 10 (layout {results[0]['layout']})."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=lambda s: [int(c) for c in s.split(",")], default=[1, 4, 16])
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--model", default="bundled:smollm2-135m-instruct", help="the model new runs start from")
    parser.add_argument("--layouts", default="1+1,2+2", help="compute threads answering+learning, comma-separated")
    parser.add_argument("--append", action="store_true", help="add the section to BENCHMARKS.md")
    args = parser.parse_args()
    passages = json.loads(SAMPLE.read_text())
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="serve-load-") as folder:
        workdir = Path(folder)
        results = [measure_layout(layout, args, passages, workdir) for layout in args.layouts.split(",")]
        memory = memory_with_versions(workdir, 10, args.model)
    publish(section(results, memory, args, (time.time() - start) / 60), args.append)


if __name__ == "__main__":
    main()
