"""``seal demo`` on the tiny model: the whole before/after story is printed."""

from __future__ import annotations

import re

from seal_lm.cli import main


def test_demo_shows_answers_before_the_self_edit_training_and_after(tiny_model_dir, capsys):
    assert main(["demo", "--model", str(tiny_model_dir), "--epochs", "1", "--target-modules", "q_proj,v_proj"]) == 0

    out = capsys.readouterr().out
    before, self_edit, after = out.index("Before:"), out.index("Self-edit written by the model"), out.index("After:")
    assert before < self_edit < after
    assert "Fine-tuning a fresh LoRA adapter" in out or "training on the passage alone" in out
    assert re.search(r"Score: \d+/4 before → \d+/4 after\.", out), "the bundled first passage has 4 questions"


def test_demo_index_out_of_range_is_a_user_error(tiny_model_dir, capsys):
    assert main(["demo", "--model", str(tiny_model_dir), "--index", "99"]) == 2
    assert "out of range" in capsys.readouterr().err
