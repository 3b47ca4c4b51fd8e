"""What every benchmark section names: the command, the machine, and where the section goes."""

from __future__ import annotations

import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from seal_lm.cli import main as seal_main

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "BENCHMARKS.md"
SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad"


def run_seal(seal_args: list[str]) -> float:
    """Run ``seal`` with ``seal_args`` in this process, exiting with its code if it fails; returns the wall time in seconds."""
    start = time.time()
    code = seal_main(seal_args)
    if code != 0:
        sys.exit(code)
    return time.time() - start


def command() -> str:
    """The command line that ran this script, quoted to be pasted back."""
    return "python " + " ".join(shlex.quote(arg) for arg in sys.argv)


def machine() -> str:
    """CPU model, architecture and count, Python and torch versions, and this process's peak RAM so far."""
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return f"{cpu_model()}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}; peak RAM {peak_gib:.2f} GiB"


def git_revision(revision: str = "HEAD") -> str:
    """``revision``'s short commit hash and subject line."""
    return subprocess.run(
        ["git", "log", "-1", "--format=%h %s", revision], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()


def cpu_model() -> str:
    """The processor's name as the kernel reports it (machines differ: AVX2 only, or AMX)."""
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        return next(
            (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
            platform.processor() or "unknown CPU",
        )


def publish(section: str, append: bool) -> None:
    """Print the section and, if ``append``, add it to the end of BENCHMARKS.md."""
    print(section)
    if append:
        with open(BENCHMARKS, "a", encoding="utf-8") as f:
            f.write(section)
