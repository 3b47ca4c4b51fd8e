"""How many compute threads seal-lm uses, and how idle ones wait: the one place for both.

PyTorch's CPU kernels run on OpenMP threads (GNU libgomp in the CPU wheels). Between two parallel
operations libgomp's idle threads *spin* for a while by default, and a process starts as many threads
as there are cores. Alone on a machine that saves a little wake-up latency; beside other busy
processes it is a collapse: a spinning thread burns the time slice that the thread it waits for
needs, and every small operation of a training step waits for a descheduled thread. Measured on a
2-core CPU (BENCHMARKS.md), three such processes side by side each ran ~10-25× slower than alone,
where a fair share would be 3×.

So seal-lm makes idle threads sleep (``OMP_WAIT_POLICY=PASSIVE``) unless the user chose a policy:
:func:`wait_passively` runs first thing when ``seal_lm`` is imported, before torch loads its OpenMP
runtime (which reads the variable once, when it is loaded; a program that imported torch before
seal_lm keeps the policy it started with). The number of threads is ``--threads`` (default: every
usable core, or ``OMP_NUM_THREADS`` when set), recorded in ``OMP_NUM_THREADS`` by :func:`set_threads`
so that whatever this process starts and whatever splits the budget (``seal serve``, worker
processes) reads the same number. This module imports nothing from the package and no torch at
import time.
"""

from __future__ import annotations

import os

WAIT_POLICY = "PASSIVE"


def wait_passively() -> None:
    """Make idle OpenMP threads sleep rather than spin, unless ``OMP_WAIT_POLICY`` is already set.

    Only takes effect in this process if torch has not been imported yet; processes started from
    here inherit it either way.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)


def usable_cores() -> int:
    """The compute threads this process may use: ``OMP_NUM_THREADS`` if set, else the CPU affinity's size."""
    return int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))


def set_threads(threads: int = 0) -> int:
    """Use ``threads`` compute threads (0: :func:`usable_cores`) here and in the processes started from here; returns it."""
    if threads < 0:
        raise ValueError(f"--threads {threads}: give a positive number (0: every usable core).")
    threads = threads or usable_cores()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    return threads


def share(threads: int, parts: int) -> int:
    """The compute threads of each of ``parts`` workers sharing ``threads``: an equal share, at least one."""
    return max(1, threads // parts)
