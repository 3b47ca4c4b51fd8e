"""Thread hygiene: idle OpenMP threads sleep after a short spin, and every command runs on ``--threads`` compute threads."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

import seal_lm.cli
from seal_lm.cli import COMMANDS, build_parser, main
from seal_lm.cli.options import settable_fields
from seal_lm.cli.serve import thread_split
from seal_lm.threads import WAIT_POLICY, set_threads, share, usable_cores


def spin_count(code: str, **env: str) -> int:
    """How long libgomp's idle threads spin before they sleep (``OMP_DISPLAY_ENV``) in a fresh process running ``code``."""
    environment = {k: v for k, v in os.environ.items() if k not in WAIT_POLICY} | {"OMP_DISPLAY_ENV": "VERBOSE"} | env
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True)
    return int(re.search(r"GOMP_SPINCOUNT = '(\d+)'", done.stderr).group(1))


def test_importing_seal_lm_makes_idle_openmp_threads_sleep_after_a_short_spin():
    assert spin_count("import torch") == 300_000  # torch alone: libgomp's default
    assert spin_count("import seal_lm.cli") == int(WAIT_POLICY["GOMP_SPINCOUNT"]) == 3000
    assert spin_count("import torch; import seal_lm") == 300_000  # too late: the runtime has read its settings


def test_a_wait_policy_the_user_set_is_kept():
    then_torch = "import seal_lm, torch"  # seal_lm loads torch lazily: torch's OpenMP starts with the second import
    assert spin_count(then_torch, OMP_WAIT_POLICY="ACTIVE") > 10**9  # spin (nearly) forever, as asked
    assert spin_count(then_torch, OMP_WAIT_POLICY="PASSIVE") == 0
    assert spin_count(then_torch, GOMP_SPINCOUNT="20") == 20


@pytest.fixture
def restore_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # set_threads writes it; monkeypatch restores it
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_set_threads_sets_torch_and_the_budget_that_started_processes_inherit(restore_threads):
    assert set_threads(1) == 1
    assert torch.get_num_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1" and usable_cores() == 1


def test_the_default_honours_omp_num_threads_else_the_cpu_affinity(restore_threads, monkeypatch):
    assert usable_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert set_threads(0) == 3 and torch.get_num_threads() == 3


def test_a_negative_thread_count_is_refused(restore_threads):
    with pytest.raises(ValueError, match="--threads -1"):
        set_threads(-1)


def test_every_command_takes_threads():
    parser = build_parser()
    for (group, name), (_, config_class, _) in COMMANDS.items():
        positionals = [
            "1" for field in settable_fields(config_class) if field.metadata.get("positional") and field.default is None
        ]
        args = parser.parse_args([*([group] if group else []), name, *positionals, "--threads", "3"])
        assert args.threads == 3, (group, name)


def test_the_command_runs_on_the_threads_given(restore_threads, monkeypatch, capsys):
    seen = []
    text, config_class, _ = COMMANDS[(None, "rollback")]
    monkeypatch.setitem(
        seal_lm.cli.COMMANDS,
        (None, "rollback"),
        (text, config_class, lambda config: seen.append(torch.get_num_threads())),
    )
    assert main(["rollback", "2", "--run", "anywhere", "--threads", "1"]) == 0
    assert seen == [1]
    assert main(["rollback", "2", "--run", "anywhere", "--threads", "-2"]) == 2
    assert "--threads -2" in capsys.readouterr().err


def test_serve_splits_the_threads_it_was_given(restore_threads):
    set_threads(4)
    assert thread_split(0, 0) == (2, 2)
    assert thread_split(1, 0) == (1, 3)
    set_threads(1)
    assert thread_split(0, 0) == (1, 1)  # never zero


def test_share_gives_each_worker_at_least_one_thread():
    assert [share(4, 2), share(2, 3), share(5, 2)] == [2, 1, 2]
