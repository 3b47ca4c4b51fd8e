"""Tests for the ARC domain: leave-one-out TTT plans, probe views, voting, scoring, submissions,
and one tiny-model end-to-end test-time-training run."""

from __future__ import annotations

import json
import re
import statistics

import pytest
from conftest import build_model

from seal_lm.adapt.lora import InnerLoop, InnerLoopSettings
from seal_lm.domains.arc.config import ConfigRejected, TTTConfig
from seal_lm.domains.arc.data import ArcTask
from seal_lm.domains.arc.domain import ArcDomain, ArcSettings
from seal_lm.domains.arc.grids import format_completion, format_task, parse_completion
from seal_lm.domains.arc.submission import task_attempts, write_submission
from seal_lm.domains.arc.ttt import leave_one_out
from seal_lm.domains.arc.voting import vote
from seal_lm.domains.base import SelfEditRejected
from seal_lm.model.prompting import PromptFormatter

# Rule: mirror left to right. Demonstrations are 2x2; the test grids are 3x3, a width no
# augmentation of a 2x2 grid has, so a 3-digit row in training data would be a leak.
FLIP = ArcTask(
    id="flip",
    train=(
        (((1, 0), (0, 0)), ((0, 1), (0, 0))),
        (((2, 3), (0, 0)), ((3, 2), (0, 0))),
        (((0, 0), (4, 0)), ((0, 0), (0, 4))),
    ),
    test=(
        (((5, 0, 0), (0, 6, 0), (0, 0, 0)), ((0, 0, 5), (0, 6, 0), (0, 0, 0))),
        (((7, 7, 0), (0, 0, 0), (0, 0, 8)), ((0, 7, 7), (0, 0, 0), (8, 0, 0))),
    ),
)
SMALL_LOOP = InnerLoopSettings(rank=4, alpha=8, target_modules=("q_proj", "v_proj"), max_seq_len=512)
CONFIG = {
    "data_generation": {
        "use_basic_augmentations": True,
        "use_size_augmentations": False,
        "use_chain_augmentations": False,
        "use_repeat_augmentations": False,
    },
    "training": {"strategy": "train_using_output_tokens", "learning_rate": 1e-3, "num_train_epochs": 1},
}


def domain(tokenizer=None, chat: bool = False, **settings) -> ArcDomain:
    return ArcDomain(PromptFormatter(tokenizer, chat=chat), ArcSettings(**{"inner_loop": SMALL_LOOP, **settings}))


def perfect_answers(arc: ArcDomain, task: ArcTask) -> list[str]:
    """What a model that knows the rule writes: each gold output under each view."""
    return [format_completion(view.apply(gold)) + "\n" for _, gold in task.test for view in arc.views]


# --- leave-one-out training plans -----------------------------------------------------------------


def test_leave_one_out_uses_each_demonstration_once_as_query():
    tasks = leave_one_out(FLIP.train)
    assert [query for _, query in tasks] == list(FLIP.train)
    assert [context for context, _ in tasks] == [
        list(FLIP.train[1:]),
        [FLIP.train[0], FLIP.train[2]],
        list(FLIP.train[:2]),
    ]


def test_plain_leave_one_out_examples_are_the_task_format():
    plan = domain(permuted_copies=0).plan_for_config(FLIP, TTTConfig(families=()))
    assert [(e.prompt, e.completion) for e in plan.examples] == [
        (format_task(context, query[0]), format_completion(query[1])) for context, query in leave_one_out(FLIP.train)
    ]


@pytest.mark.parametrize(
    "families, copies, expected",
    [((), 0, 3), ((), 1, 6), (("basic",), 0, 24), (("basic",), 2, 72), (("basic", "size", "chain", "repeat"), 1, 114)],
)
def test_example_counts(families, copies, expected):
    plan = domain(permuted_copies=copies).plan_for_config(FLIP, TTTConfig(families=families))
    assert len(plan.examples) == expected == len(set(plan.examples))


def test_a_config_without_colour_permutations_gets_no_permuted_copies():
    arc = domain(permuted_copies=2)
    with_colours = arc.plan_for_config(FLIP, TTTConfig(families=("basic",)))
    without = arc.plan_for_config(FLIP, TTTConfig(families=("basic",), colour_permutations=False))
    assert (len(with_colours.examples), len(without.examples)) == (72, 24)
    assert set(without.examples) < set(with_colours.examples)  # the unpermuted examples are the same ones


def test_duplicate_examples_from_symmetric_grids_are_dropped():
    dots = ArcTask("dots", train=((((1,),), ((2,),)), (((3,),), ((4,),))), test=((((5,),), ((6,),)),))
    plan = domain(permuted_copies=0).plan_for_config(dots, TTTConfig(families=("basic",)))
    assert len(plan.examples) == 2  # every symmetry of a 1x1 grid is the grid itself


def test_no_test_grid_leaks_into_training():
    plan = domain().plan_for_config(FLIP, TTTConfig(families=("basic", "size", "chain", "repeat")))
    for example in plan.examples:
        rows = re.findall(r"^\d+$", example.prompt + example.completion, flags=re.MULTILINE)
        assert rows and {len(row) for row in rows} <= {2, 4}  # 2x2 demonstrations, upscaled or tiled


def test_the_cap_samples_reproducibly_by_seed():
    config = TTTConfig(families=("basic", "repeat"))
    first, again = (domain(max_examples=10).plan_for_config(FLIP, config) for _ in range(2))
    other_seed = domain(max_examples=10, seed=1).plan_for_config(FLIP, config)
    assert len(first.examples) == 10
    assert first == again
    assert first.examples != other_seed.examples


def test_plan_settings_come_from_the_config_and_the_arc_lora_defaults():
    plan = ArcDomain(PromptFormatter(None, chat=False)).parse_self_edit(FLIP, json.dumps(CONFIG))
    settings = plan.settings
    assert (settings.lr, settings.epochs, settings.loss_on) == (1e-3, 1, "completion")
    assert (settings.rank, settings.alpha) == (128, 16)
    all_tokens = ArcDomain(PromptFormatter(None, chat=False)).context_plan(FLIP)
    assert all_tokens.settings.loss_on == "all"


def test_over_budget_and_unparsable_self_edits_are_rejected_with_the_reason():
    arc = domain(max_train_steps=20)
    with pytest.raises(SelfEditRejected, match="48 examples x 1 epochs = 48 training steps, over the budget of 20"):
        arc.parse_self_edit(FLIP, json.dumps(CONFIG))
    with pytest.raises(SelfEditRejected, match="no complete JSON object found.*cut off at the token budget"):
        arc.parse_self_edit(FLIP, '{"data_generation": {', truncated=True)


def test_examples_longer_than_max_seq_len_are_dropped():
    config = TTTConfig(families=("basic", "size"))
    full = domain().plan_for_config(FLIP, config)
    short = domain(inner_loop=InnerLoopSettings(max_seq_len=100)).plan_for_config(FLIP, config)
    assert all(len(e.prompt) + len(e.completion) <= 100 for e in short.examples)
    assert 0 < len(short.examples) < len(full.examples)
    with pytest.raises(ConfigRejected, match="no training example of task flip fits in max_seq_len=20"):
        domain(inner_loop=InnerLoopSettings(max_seq_len=20)).plan_for_config(FLIP, config)


# --- prompts --------------------------------------------------------------------------------------


def test_probe_prompts_are_one_view_per_prompt_for_each_test_input():
    arc = domain(views=3)
    prompts = arc.probe_prompts(FLIP)
    assert len(prompts) == 2 * 3
    test_input = FLIP.test[1][0]
    rotate90 = arc.views[1]
    assert prompts[3] == format_task(FLIP.train, test_input)  # view 0 is the identity
    assert prompts[4] == format_task(
        [(rotate90.apply(i), rotate90.apply(o)) for i, o in FLIP.train], rotate90.apply(test_input)
    )
    assert all(format_completion(gold) not in p for p in prompts for _, gold in FLIP.test)


def test_self_edit_prompt_shows_demonstrations_and_every_key(tiny_tokenizer):
    for arc in (domain(), domain(tiny_tokenizer, chat=True)):
        prompt = arc.self_edit_prompt(FLIP)
        assert format_task(FLIP.train[:2], FLIP.train[2][0]) in prompt
        for key in [
            *CONFIG["data_generation"],
            *CONFIG["training"],
            "train_using_all_tokens",
            "train_using_output_tokens",
        ]:
            assert key in prompt
    assert domain().self_edit_prompt(FLIP).endswith("Configuration:\n")
    assert domain(tiny_tokenizer, chat=True).self_edit_prompt(FLIP).startswith("<|im_start|>user\n")


def test_settings_are_validated():
    with pytest.raises(ValueError, match="views must be from 1 to 8, got 9"):
        ArcSettings(views=9)
    with pytest.raises(ValueError, match="max_examples must be at least 1"):
        ArcSettings(max_examples=0)


# --- voting and scoring ---------------------------------------------------------------------------

A, B, C = ((1,),), ((2,),), ((3,),)


@pytest.mark.parametrize(
    "predictions, attempts",
    [
        ([A, B, B, C], [B, A]),  # majority first, then the earliest of the tied rest
        ([C, A, B, A, B], [A, B]),  # tie between A and B: A appeared first
        ([None, C, None], [C]),  # non-grids do not vote
        ([None, None], []),
        ([A, A, A], [A]),
    ],
)
def test_vote(predictions, attempts):
    assert vote(predictions) == attempts


def test_perfect_answers_score_correct_on_every_probe():
    arc = domain()
    records = arc.score(FLIP, perfect_answers(arc, FLIP))
    assert len(records) == 2 * 8
    assert all(r["parsed"] and r["correct"] for r in records)
    assert [r["attempt_1"] for r in records[:8]] == [[list(row) for row in FLIP.test[0][1]]] * 8
    assert [r["attempt_2"] for r in records] == [None] * 16  # every view agreed
    assert [r["view"] for r in records[:8]] == [v.name for v in arc.views]


def test_mean_correct_over_probes_is_the_share_of_solved_test_inputs():
    arc = domain()
    answers = perfect_answers(arc, FLIP)
    answers[8:] = ["12\n3", "nonsense"] * 4  # the second test input gets no grid at all
    records = arc.score(FLIP, answers)
    assert statistics.fmean(r["correct"] for r in records) == 0.5
    assert [r["parsed"] for r in records[8:]] == [False] * 8
    assert records[8]["attempt_1"] is None


def test_a_minority_answer_can_still_win_as_the_second_attempt():
    arc = domain()
    wrong = format_completion(((9, 9, 9), (9, 9, 9), (9, 9, 9)))  # the same under every view
    answers = perfect_answers(arc, FLIP)
    answers[:5] = [wrong] * 5
    records = arc.score(FLIP, answers)
    assert records[0]["attempt_1"] == [[9, 9, 9]] * 3
    assert records[0]["attempt_2"] == [list(row) for row in FLIP.test[0][1]]
    assert all(r["correct"] for r in records)
    # Two different wrong grids outvoting the gold one leave it out of the two attempts.
    answers[5:7] = [format_completion(((8, 8, 8),) * 3)] * 2
    assert not any(r["correct"] for r in arc.score(FLIP, answers)[:8])


def test_empty_answers_score_zero_and_unknown_gold_is_never_correct():
    arc = domain(views=2)
    assert not any(r["correct"] or r["parsed"] for r in arc.score(FLIP, [""] * 4))
    hidden = ArcTask("hidden", FLIP.train, tuple((i, None) for i, _ in FLIP.test))
    assert not any(r["correct"] for r in arc.score(hidden, perfect_answers(arc, FLIP)))
    with pytest.raises(ValueError, match="task flip has 4 probes \\(2 test inputs x 2 views\\), got 3 answers"):
        arc.score(FLIP, [""] * 3)


def test_submission_has_two_attempts_per_test_input(tmp_path):
    arc = domain(views=2)
    answers = perfect_answers(arc, FLIP)
    answers[2:] = ["", ""]
    path = tmp_path / "out" / "submission.json"
    written = write_submission(path, {"flip": arc.score(FLIP, answers)})
    assert (
        json.loads(path.read_text())
        == written
        == {
            "flip": [
                {"attempt_1": [list(row) for row in FLIP.test[0][1]], "attempt_2": [[0]]},
                {"attempt_1": [[0]], "attempt_2": [[0]]},
            ]
        }
    )
    with pytest.raises(ValueError, match="cover test inputs \\[1\\]"):
        task_attempts(arc.score(FLIP, answers)[2:])


# --- end to end with a tiny random model ----------------------------------------------------------


def test_tiny_model_test_time_training_end_to_end(tiny_tokenizer):
    arc = domain(views=2, max_examples=6, answer_max_tokens=12)
    loop = InnerLoop(build_model(len(tiny_tokenizer)), tiny_tokenizer)
    plan = arc.parse_self_edit(FLIP, "Here you go:\n```json\n" + json.dumps(CONFIG) + "\n```")
    prompts = arc.probe_prompts(FLIP)

    [result] = loop.train_and_answer([plan], prompts, arc.answer_generation)

    assert result.stats.steps == 6
    records = arc.score(FLIP, [answer.text for answer in result.answers])
    assert len(records) == len(prompts) == 4
    for record, answer in zip(records, result.answers):
        assert set(record) == {
            "test_index",
            "view",
            "raw_answer",
            "parsed",
            "prediction",
            "attempt_1",
            "attempt_2",
            "gold",
            "correct",
        }
        assert record["parsed"] == (parse_completion(answer.text) is not None)
        assert isinstance(record["correct"], bool)
    assert [r["test_index"] for r in records] == [0, 0, 1, 1]
    assert records[0]["correct"] == records[1]["correct"] and records[2]["correct"] == records[3]["correct"]
    assert all(r["correct"] for r in arc.score(FLIP, perfect_answers(arc, FLIP)))
