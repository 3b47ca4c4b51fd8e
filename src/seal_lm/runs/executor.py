"""Executors: run inner-loop jobs in this process (the default), in local worker processes, or over the workers of a Ray cluster.

A *worker* is per-process state, typically a model replica with its domain and inner-loop engine,
built once by a ``setup`` callable in the process that runs the jobs. A *job* is a function
``job(worker, item) -> result``. ``executor.run(setup, job, items)`` yields ``(item, result)`` pairs
as jobs finish; the caller records each result when it arrives, so a job is counted exactly once
however often it had to be retried. A job may be a generator of partial results: in this process
the caller receives each as the job produces it; from a worker process or a Ray actor they come back
together, as a list, when the job ends.

Jobs must not depend on the order they run in or on what ran before them in the same worker: then
every executor gives the same results, only faster or slower.
"""

from __future__ import annotations

import inspect
import logging
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)

W = TypeVar("W")  # a worker
I = TypeVar("I")  # noqa: E741 (an item)
R = TypeVar("R")  # a result

RAY_MISSING = "--executor ray needs Ray: pip install 'seal-lm[ray]'"


class ExecutorError(RuntimeError):
    """Jobs that cannot be run as asked (Ray missing, too few resources, workers that keep dying)."""


class Executor(Protocol):
    workers: int  # how many jobs run at once

    def run(self, setup: Callable[[], W], job: Callable[[W, I], R], items: Sequence[I]) -> Iterator[tuple[I, R]]:
        """Run ``job`` on every item over workers built by ``setup``; yield ``(item, result)`` as each finishes."""


class InProcessExecutor:
    """One worker in this process, built on the first item; jobs run one after another, in order.

    A generator job is handed over as it is: it runs as the caller takes its results.
    """

    workers = 1

    def run(self, setup: Callable[[], W], job: Callable[[W, I], R], items: Sequence[I]) -> Iterator[tuple[I, R]]:
        worker = None
        for item in items:
            if worker is None:
                worker = setup()
            yield item, job(worker, item)


class ProcessExecutor:
    """Jobs spread over ``workers`` local processes, each holding one worker: all cores of one machine, without Ray.

    The processes are started fresh (``spawn``: nothing of this process's state is inherited), each
    runs ``prepare`` first (e.g. to set its number of compute threads), builds its worker with
    ``setup`` on its first job and keeps it for the next. ``setup``, ``job`` and the items must be
    picklable (module-level functions, ``functools.partial`` of them, dataclasses). Results come back
    as jobs finish. A worker process that dies ends the run with :class:`ExecutorError`; the results
    already yielded were recorded, so re-running resumes.
    """

    def __init__(self, workers: int = 1, prepare: Callable[[], None] | None = None):
        self.workers = workers
        self.prepare = prepare

    def run(self, setup: Callable[[], W], job: Callable[[W, I], R], items: Sequence[I]) -> Iterator[tuple[I, R]]:
        if not items:
            return
        context = multiprocessing.get_context("spawn")
        workers = min(self.workers, len(items))
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_process, initargs=(setup, self.prepare)
        ) as pool:
            futures = {pool.submit(_run_in_process, job, item): item for item in items}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            except BrokenProcessPool:
                raise ExecutorError(
                    "A worker process died mid-job (out of memory?); finished jobs are recorded, re-run to resume."
                ) from None
            finally:
                for future in futures:
                    future.cancel()


_process_setup: Callable[[], object] | None = None  # in a worker process: how to build its worker
_process_worker: object = None  # in a worker process: the worker, built by its first job


def _start_process(setup: Callable[[], object], prepare: Callable[[], None] | None) -> None:
    global _process_setup
    if prepare is not None:
        prepare()
    _process_setup = setup


def _run_in_process(job, item):
    global _process_worker
    if _process_worker is None:
        _process_worker = _process_setup()
    result = job(_process_worker, item)
    return list(result) if inspect.isgenerator(result) else result  # a generator cannot travel back to the caller


class _Actor:
    """A Ray actor's state: its worker, built by the first job it runs."""

    def __init__(self):
        self.worker = None

    def run(self, setup, job, item):
        if self.worker is None:
            self.worker = setup()
        result = job(self.worker, item)
        return list(result) if inspect.isgenerator(result) else result  # a generator cannot travel back to the caller


class RayExecutor:
    """Jobs spread over ``workers`` Ray actors, each holding one worker (one GPU each where the cluster has GPUs).

    Joins the cluster at ``address`` (``ray.init(address=...)``), or starts a local Ray when it is None;
    a Ray already initialised in this process is used as it is. Every actor is kept busy; results come
    back as they finish. When an actor dies mid-job (its process or node is lost), a replacement actor
    is started and the job is submitted again, at most ``max_retries`` times per job.
    """

    def __init__(self, address: str | None = None, workers: int = 1, max_retries: int = 3):
        try:
            import ray
        except ImportError:
            raise ExecutorError(RAY_MISSING) from None
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False)
            except ConnectionError as err:
                reason = str(err).splitlines()[0]
                raise ExecutorError(
                    f"Could not join the Ray cluster at --ray-address {address}: {reason} Leave --ray-address empty for a local Ray."
                ) from None
        self.ray = ray
        self.workers = workers
        self.max_retries = max_retries
        resource = "GPU" if ray.cluster_resources().get("GPU", 0) >= 1 else "CPU"
        available = int(ray.cluster_resources().get(resource, 0))
        if workers > available:
            raise ExecutorError(
                f"--workers {workers} needs {workers} {resource}s but the Ray cluster has {available}; lower --workers."
            )
        self.actor_class = ray.remote(num_cpus=1, num_gpus=1 if resource == "GPU" else 0)(_Actor)
        log.info("Ray executor: %d worker(s), one %s each", workers, resource)

    def run(self, setup: Callable[[], W], job: Callable[[W, I], R], items: Sequence[I]) -> Iterator[tuple[I, R]]:
        ray = self.ray
        pending = deque(enumerate(items))
        retries = [0] * len(pending)
        setup_ref, job_ref = ray.put(setup), ray.put(job)
        idle = [self.actor_class.remote() for _ in range(min(self.workers, len(pending)))]
        running = {}  # result reference → (actor, item index, item)
        try:
            while pending or running:
                while idle and pending:
                    actor, (index, item) = idle.pop(), pending.popleft()
                    running[actor.run.remote(setup_ref, job_ref, item)] = (actor, index, item)
                [ready], _ = ray.wait(list(running), num_returns=1)
                actor, index, item = running.pop(ready)
                try:
                    result = ray.get(ready)
                except ray.exceptions.RayTaskError as err:  # the job itself raised: the caller sees its exception
                    raise err.cause from None
                except (
                    ray.exceptions.RayActorError,
                    ray.exceptions.WorkerCrashedError,
                    ray.exceptions.ObjectLostError,
                ) as err:
                    retries[index] += 1
                    reason = str(err).strip().splitlines()[0]
                    if retries[index] > self.max_retries:
                        raise ExecutorError(
                            f"A job's worker died {retries[index]} times (last: {reason}); giving up. "
                            "The job may not fit in one worker (memory?): see the Ray logs."
                        ) from None
                    log.warning(
                        "A worker died mid-job (%s); retrying the job on a new worker (retry %d)",
                        reason,
                        retries[index],
                    )
                    ray.kill(actor, no_restart=True)
                    idle.append(self.actor_class.remote())
                    pending.appendleft((index, item))
                    continue
                idle.append(actor)
                yield item, result
        finally:
            for actor in idle + [actor for actor, _, _ in running.values()]:
                ray.kill(actor, no_restart=True)
