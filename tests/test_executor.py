"""Tests for the executors (``seal_lm.runs.executor``), ``--executor processes`` and ``--executor ray``
(on a local Ray with 2 CPUs): every item's result arrives exactly once, a Ray worker that dies mid-job
is replaced and its job retried, and ``seal eval knowledge`` and a ReST-EM round record the same
results in worker processes and on Ray as in-process."""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path

import pytest
import ray
import torch
from test_restem import PASSAGES, SETTINGS, keep_first, make_domain

from seal_lm.cli import main
from seal_lm.cli.shared_options import ExecutorOptions, ModelOptions
from seal_lm.loops.restem import train_policy
from seal_lm.model.loading import load_model
from seal_lm.runs.executor import RAY_MISSING, ExecutorError, InProcessExecutor, ProcessExecutor, RayExecutor
from seal_lm.runs.rundir import RunDir

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray whose workers can import this module's jobs (and ``test_restem``'s domain) and this tree's package."""
    source = os.pathsep.join(
        [str(TESTS), str(TESTS.parent / "src")]
    )  # the workers run the code under test, as the driver does
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": source}})
    yield
    ray.shutdown()


def test_joining_a_cluster_that_is_not_there_says_so():
    """Runs before the local Ray below is started (and needs no cluster)."""
    assert not ray.is_initialized()
    with pytest.raises(ExecutorError, match="^Could not join the Ray cluster at --ray-address auto: .*local Ray.$"):
        RayExecutor(address="auto")


# ---------------------------------------------------------------------------------------------
# Jobs: importable by Ray workers (by this module's name)
# ---------------------------------------------------------------------------------------------


def new_worker() -> dict:
    """A worker's state: which process built it and how many jobs it has run."""
    return {"pid": os.getpid(), "jobs": 0}


def square(worker: dict, item: int) -> dict:
    worker["jobs"] += 1
    return {"square": item * item, "pid": worker["pid"], "jobs_on_worker": worker["jobs"]}


def die_once_on(victim: int, marker: Path, worker: dict, item: int) -> dict:
    """Kill the whole worker process on ``victim``'s first attempt (before any result exists)."""
    if item == victim and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)
    return square(worker, item)


def square_and_threads(worker: dict, item: int) -> dict:
    """``square``, and the compute threads the job ran on."""
    return square(worker, item) | {"threads": torch.get_num_threads()}


def always_die(worker: dict, item: int) -> None:
    os._exit(1)


def refuse(worker: dict, item: int) -> None:
    raise ValueError(f"item {item} is not allowed")


def powers(worker: dict, item: int):
    """A generator job: its partial results one by one."""
    for exponent in (1, 2, 3):
        worker["jobs"] += 1
        yield item**exponent


# ---------------------------------------------------------------------------------------------
# The executors on plain jobs
# ---------------------------------------------------------------------------------------------


def test_in_process_builds_one_worker_lazily_and_keeps_the_order():
    setups = []

    def setup():
        setups.append(1)
        return new_worker()

    assert list(InProcessExecutor().run(setup, square, [])) == []
    assert setups == []  # no item: no worker built (no model loaded)
    results = list(InProcessExecutor().run(setup, square, [3, 1, 2]))
    assert [(item, r["square"], r["jobs_on_worker"]) for item, r in results] == [(3, 9, 1), (1, 1, 2), (2, 4, 3)]
    assert setups == [1]


def test_in_process_a_generator_job_runs_as_its_results_are_taken():
    worker = new_worker()
    [(item, results)] = list(InProcessExecutor().run(lambda: worker, powers, [2]))
    assert item == 2 and worker["jobs"] == 0  # nothing has run yet
    assert next(results) == 2 and worker["jobs"] == 1  # the first result exists before the second is made
    assert list(results) == [4, 8]


def test_on_ray_a_generator_jobs_results_come_back_together(local_ray):
    assert list(RayExecutor(workers=1).run(new_worker, powers, [2, 3])) in (
        [(2, [2, 4, 8]), (3, [3, 9, 27])],
        [(3, [3, 9, 27]), (2, [2, 4, 8])],
    )


def test_ray_retries_a_job_whose_worker_died_and_yields_every_result_once(local_ray, tmp_path):
    marker = tmp_path / "died"
    items = list(range(6))
    results = list(RayExecutor(workers=2).run(new_worker, partial(die_once_on, 3, marker), items))

    assert marker.exists(), "the victim's worker did die"
    assert sorted(item for item, _ in results) == items  # each item exactly once
    assert all(r["square"] == item * item for item, r in results)
    by_item = dict(results)
    assert by_item[3]["pid"] != int(marker.read_text())  # redone by another worker
    pids = {r["pid"] for _, r in results}
    assert len(pids) >= 2 and os.getpid() not in pids  # spread over Ray workers, not run here
    for pid in pids:  # each worker was built once and then reused for its jobs
        counts = sorted(r["jobs_on_worker"] for _, r in results if r["pid"] == pid)
        assert counts == list(range(1, len(counts) + 1))


def test_ray_gives_up_on_a_job_that_keeps_killing_its_worker(local_ray):
    with pytest.raises(ExecutorError, match="died 2 times") as caught:
        list(RayExecutor(workers=1, max_retries=1).run(new_worker, always_die, [7]))
    assert "\n" not in str(caught.value)


def test_ray_passes_on_the_jobs_own_exception(local_ray):
    with pytest.raises(ValueError, match="^item 5 is not allowed$"):
        list(RayExecutor(workers=1).run(new_worker, refuse, [5]))


def test_more_workers_than_the_cluster_has_is_refused(local_ray):
    with pytest.raises(ExecutorError, match="--workers 3 needs 3 CPUs but the Ray cluster has 2"):
        RayExecutor(workers=3)


def test_worker_processes_each_build_one_worker_on_their_share_of_the_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # --threads 2
    executor = ExecutorOptions(executor="processes", workers=2).start_executor()
    results = list(executor.run(new_worker, square_and_threads, list(range(6))))
    assert sorted(item for item, _ in results) == list(range(6))
    assert all(r["square"] == item * item and r["threads"] == 1 for item, r in results)  # 2 workers × 1 thread
    pids = {r["pid"] for _, r in results}
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids
    for pid in pids:  # each worker was built once and then reused for its jobs
        counts = sorted(r["jobs_on_worker"] for _, r in results if r["pid"] == pid)
        assert counts == list(range(1, len(counts) + 1))


def test_the_auto_executor_is_one_worker_process_per_core_on_a_multi_core_cpu_else_in_process(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    options = ExecutorOptions()  # --executor auto
    executor = options.start_executor("cpu")
    assert isinstance(executor, ProcessExecutor) and executor.workers == 2
    assert isinstance(options.start_executor("cuda:0"), InProcessExecutor)
    assert isinstance(options.start_executor("cpu", one_process=True), InProcessExecutor)  # e.g. --setting cpt
    assert isinstance(ExecutorOptions(executor="in-process").start_executor("cpu"), InProcessExecutor)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert isinstance(options.start_executor("cpu"), InProcessExecutor)


def test_worker_processes_return_a_generator_jobs_results_together_and_pass_on_its_exception():
    assert sorted(ProcessExecutor(workers=2).run(new_worker, powers, [2, 3])) == [(2, [2, 4, 8]), (3, [3, 9, 27])]
    with pytest.raises(ValueError, match="^item 5 is not allowed$"):
        list(ProcessExecutor(workers=1).run(new_worker, refuse, [5]))


def test_a_worker_process_that_dies_ends_the_run_with_one_line():
    with pytest.raises(ExecutorError, match="A worker process died mid-job") as caught:
        list(ProcessExecutor(workers=1).run(new_worker, always_die, [7]))
    assert "\n" not in str(caught.value)


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch, tmp_path, tiny_model_dir, data, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes ``import ray`` fail
    with pytest.raises(ExecutorError) as caught:
        RayExecutor()
    assert str(caught.value) == RAY_MISSING == "--executor ray needs Ray: pip install 'seal-lm[ray]'"

    assert main(eval_args(tiny_model_dir, data, tmp_path / "run", "--executor", "ray")) == 2
    assert capsys.readouterr().err.strip() == f"seal: error: {RAY_MISSING}"
    assert not (tmp_path / "run").exists()  # refused before any work


def test_workers_in_process_is_refused(tmp_path, tiny_model_dir, data, capsys):
    assert main(eval_args(tiny_model_dir, data, tmp_path / "run", "--workers", "2")) == 2
    assert "--workers 2" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_more_worker_processes_than_threads_is_refused(tmp_path, tiny_model_dir, data, capsys, keep_threads):
    assert (
        main(
            eval_args(
                tiny_model_dir, data, tmp_path / "run", "--executor", "processes", "--workers", "2", "--threads", "1"
            )
        )
        == 2
    )
    assert "--workers 2 with --threads 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# The loops: the same records on Ray as in-process
# ---------------------------------------------------------------------------------------------

EVAL_PASSAGES = [
    {
        "title": p.title,
        "context": p.context,
        "questions": [{"question": q.question, "answer": list(q.answers)} for q in p.questions],
    }
    for p in PASSAGES[:2]
]


@pytest.fixture
def data(tmp_path) -> Path:
    """Two passages as a data file for ``seal eval knowledge``."""
    path = tmp_path / "data.json"
    path.write_text(json.dumps(EVAL_PASSAGES))
    return path


def eval_args(model_dir, data, out, *extra: str) -> list[str]:
    return [
        "eval",
        "knowledge",
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--out",
        str(out),
        "--conditions",
        "base,passage,self-edit",
        "--k",
        "2",
        "--epochs",
        "2",
        "--lora-rank",
        "4",
        "--lora-alpha",
        "8",
        "--self-edit-max-tokens",
        "16",
        "--answer-max-tokens",
        "4",
        "--lora-dropout",
        "0.1",
        "--bootstrap-samples",
        "50",
        *extra,
    ]  # dropout: jobs must reseed it


def without_timings(value):
    """``value`` without its timings (``seconds``, ``mean_unit_seconds``): wall times differ between runs."""
    if isinstance(value, dict):
        return {key: without_timings(v) for key, v in value.items() if not key.endswith("seconds")}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def jsonl(path: Path, key: str) -> list[dict]:
    """The records of ``path`` sorted by ``key`` (Ray appends them in the order they finish)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return sorted(without_timings(rows), key=lambda row: row[key])


def test_eval_knowledge_records_the_same_on_ray_as_in_process(local_ray, tmp_path, tiny_model_dir, data):
    assert main(eval_args(tiny_model_dir, data, tmp_path / "in-process")) == 0
    assert main(eval_args(tiny_model_dir, data, tmp_path / "ray", "--executor", "ray", "--workers", "2")) == 0

    expected = jsonl(tmp_path / "in-process" / "records.jsonl", "unit")
    assert len(expected) == 2 * (1 + 1 + 2)
    assert any(record["train"] for record in expected)  # adapters were trained, not only base answers
    assert jsonl(tmp_path / "ray" / "records.jsonl", "unit") == expected
    results = [json.loads((tmp_path / name / "results.json").read_text()) for name in ("in-process", "ray")]
    assert without_timings(results[1]) == without_timings(results[0])
    assert list(results[1]["conditions"]) == ["base", "passage", "self-edit"]  # the table in --conditions order

    before = (tmp_path / "ray" / "records.jsonl").read_bytes()  # the executor is not part of a run's identity
    assert main(eval_args(tiny_model_dir, data, tmp_path / "ray")) == 0
    assert (tmp_path / "ray" / "records.jsonl").read_bytes() == before


def test_eval_knowledge_records_the_same_in_worker_processes_as_in_process(
    tmp_path, tiny_model_dir, data, keep_threads
):
    """The default executor on 2 threads is 2 worker processes of one thread: the same records as in-process."""
    assert main(eval_args(tiny_model_dir, data, tmp_path / "in-process", "--executor", "in-process")) == 0
    assert main(eval_args(tiny_model_dir, data, tmp_path / "processes", "--threads", "2")) == 0

    expected = jsonl(tmp_path / "in-process" / "records.jsonl", "unit")
    assert any(record["train"] for record in expected)
    assert jsonl(tmp_path / "processes" / "records.jsonl", "unit") == expected
    results = [json.loads((tmp_path / name / "results.json").read_text()) for name in ("in-process", "processes")]
    assert without_timings(results[1]) == without_timings(results[0])


def test_a_restem_round_is_the_same_on_ray_as_in_process(local_ray, tmp_path, tiny_model_dir):
    """E-step on 2 Ray workers that load the round's policy; the M-step here: the same samples,
    kept pairs and new policy as the in-process round."""
    same_restem_round(tmp_path, tiny_model_dir, RayExecutor(workers=2))


def test_a_restem_round_is_the_same_in_worker_processes_as_in_process(tmp_path, tiny_model_dir):
    same_restem_round(tmp_path, tiny_model_dir, ProcessExecutor(workers=2))


def same_restem_round(tmp_path, tiny_model_dir, executor) -> None:
    """A ReST-EM round with its E-step on ``executor`` gives the in-process round's samples, kept pairs and policy."""
    options = ModelOptions(model=str(tiny_model_dir))

    def round_on(executor, name: str) -> Path:
        run = RunDir.open(tmp_path / name, {"test": "executors"})
        workers = partial(options.worker, make_domain)
        return Path(
            train_policy(
                run,
                PASSAGES,
                options.domain(make_domain),
                workers,
                load_model,
                str(tiny_model_dir),
                SETTINGS,
                keep_first,
                executor=executor,
            )
        )

    expected, elsewhere = round_on(InProcessExecutor(), "in-process"), round_on(executor, "other")

    samples = jsonl(expected.parent / "samples.jsonl", "context_id")
    assert len(samples) == SETTINGS.contexts_per_round and all(r["rewards"][0] is not None for r in samples)
    assert jsonl(elsewhere.parent / "samples.jsonl", "context_id") == samples
    assert (elsewhere.parent / "kept.jsonl").read_text() == (expected.parent / "kept.jsonl").read_text()
    weights, other_weights = load_model(str(expected)).model.state_dict(), load_model(str(elsewhere)).model.state_dict()
    assert all(torch.equal(other_weights[name], weights[name]) for name in weights)
