"""How many compute threads seal-lm uses, and how idle ones wait: the one place for both.

PyTorch's CPU kernels run on OpenMP threads (GNU libgomp in the Linux CPU wheels), and a process
starts as many as there are cores. Between two parallel operations libgomp's idle threads *spin*
(300,000 times by default) before they sleep. Alone on a machine that saves the wake-up latency of
the next small operation; beside other busy processes it is a collapse: a spinning thread burns the
time slice that the thread it waits for needs. In a quick measurement on a busy 2-core machine,
three short LoRA training processes side by side each ran 10-25× slower than alone, where a fair
share would be about 3× (``benchmarks/cpu_contention.py`` measures it with ``seal demo``).

So seal-lm makes idle threads sleep after a short spin, unless the user set either variable:
``OMP_WAIT_POLICY=PASSIVE`` (which every OpenMP runtime reads) and ``GOMP_SPINCOUNT=3000`` (libgomp's
spin before sleeping: 100× shorter than its default, yet enough to keep most of a lone job's speed;
sleeping at once cost a lone inner loop ~35% in the same measurement). :func:`wait_passively` runs
first thing when ``seal_lm`` is imported, before torch loads its OpenMP runtime, which reads the
variables once, when it is loaded: a program that imported torch before seal_lm keeps the policy it
started with. The number of threads is ``--threads`` (default: every usable core, or
``OMP_NUM_THREADS`` when set), recorded in ``OMP_NUM_THREADS`` by :func:`set_threads` so that
whatever this process starts and whatever splits the budget (``seal serve``, worker processes)
reads the same number. This module imports nothing from the package and no torch at
import time.
"""

from __future__ import annotations

import os

WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}


def wait_passively() -> None:
    """Make idle OpenMP threads sleep after a short spin, unless the user set a wait policy (either variable).

    Only takes effect in this process if torch has not been imported yet; processes started from
    here inherit it either way.
    """
    if not any(name in os.environ for name in WAIT_POLICY):
        os.environ.update(WAIT_POLICY)


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
