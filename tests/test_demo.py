"""``seal demo`` on the tiny model: the whole before/after story is printed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from seal_lm.cli import main


def demo_alone(model_dir, *flags: str) -> list[str]:
    """``seal demo`` arguments for one model: no policy to compare with."""
    return ["demo", "--model", str(model_dir), "--policy", "", *flags]


def test_demo_shows_answers_before_the_self_edit_training_and_after(tiny_model_dir, capsys):
    assert main(demo_alone(tiny_model_dir, "--epochs", "1", "--target-modules", "q_proj,v_proj")) == 0

    out = capsys.readouterr().out
    before, self_edit, after = out.index("Before:"), out.index("Self-edit written by the model"), out.index("After:")
    assert before < self_edit < after
    assert "Fine-tuning a fresh LoRA adapter" in out or "training on the passage alone" in out
    assert re.search(r"Score: \d+/4 before → \d+/4 after\.", out), "the bundled first passage has 4 questions"
    assert out.count("=== ") == 1, "no policy to compare with"


def test_demo_runs_the_policy_on_the_same_passage_after_the_model(
    tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch, capsys
):
    from test_model_loading import save_adapter

    monkeypatch.setenv("SEAL_LM_CACHE", str(tmp_path / "cache"))
    policy = tmp_path / "policy-adapter"
    save_adapter(tiny_model_dir, tiny_tokenizer, policy)
    argv = ["demo", "--model", str(tiny_model_dir), "--policy", str(policy), "--epochs", "1"]
    assert main(argv) == 0

    out = capsys.readouterr().out
    assert out.count("Passage (") == 1, "one passage for both"
    model_part, policy_part = out.split(f"=== {policy} ===")
    assert f"=== {tiny_model_dir} ===" in model_part and "After:" in model_part
    assert "Self-edit written by the model" in policy_part and "After:" in policy_part
    summary = policy_part.split("In short:")[1].strip().splitlines()
    assert [line.rsplit("(", 1)[1] for line in summary] == [f"{tiny_model_dir})", f"{policy})"]
    assert all(re.match(r"\s*Score: \d+/4 before → \d+/4 after\.", line) for line in summary)


def test_an_unusable_policy_is_reported_before_any_model_loads(tiny_model_dir, tmp_path, capsys):
    assert main(["demo", "--model", str(tiny_model_dir), "--policy", str(tmp_path / "nope")]) == 2
    captured = capsys.readouterr()
    assert "nope" in captured.err and "not found" in captured.err
    assert "Passage (" not in captured.out


def test_demo_index_out_of_range_is_a_user_error(tiny_model_dir, capsys):
    assert main(["demo", "--model", str(tiny_model_dir), "--index", "99"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_ctrl_c_during_the_demo_ends_cleanly_saying_nothing_was_kept(tiny_model_dir):
    """``python -m seal_lm demo`` (what the ``seal`` script runs) in its own process, interrupted while it
    fine-tunes: exit status 130 and one line, no traceback and no native abort ("terminate called")."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "seal_lm", *demo_alone(tiny_model_dir, "--epochs", "2000")]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if line.startswith("Fine-tuning a fresh LoRA adapter"):
                break
        else:
            pytest.fail(f"the demo ended before fine-tuning: {process.stderr.read()[-2000:]}")
        time.sleep(1.0)  # inside the training loop
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err[-2000:]
    assert err.rstrip().endswith("seal: interrupted; the demo writes no files, so nothing is kept."), err[-2000:]
    assert "Traceback" not in err and "terminate called" not in err


def test_ctrl_c_while_the_command_starts_is_one_line():
    """Interrupted while torch and transformers import: the same clean ending."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    script = (
        "import os, signal, sys; import seal_lm.__main__ as entry; sys.argv = ['seal', 'demo']; "
        "signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGINT)); "
        "signal.setitimer(signal.ITIMER_REAL, 0.05); entry.run()"  # Ctrl-C 50 ms into seconds of imports
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr[-2000:]
    assert done.stderr.strip() == "seal: interrupted while starting; nothing was done."
