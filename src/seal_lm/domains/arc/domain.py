"""Few-shot abstract reasoning (SEAL domain 2): ARC tasks solved by test-time training (TTT).

The context is a task's demonstrations. The self-edit is a JSON configuration (:mod:`.config`)
choosing augmentations and training settings; it becomes a plan of augmented leave-one-out
examples (:mod:`.ttt`). Probes ask for each test input's output under several views (symmetries
of the task); :meth:`ArcDomain.score` maps each prediction back, votes two attempts per test input
and grades them against the gold output.

Unlike the knowledge domain, the probes show the demonstrations: an ARC test input means nothing
without them. Probe prompts and training examples are plain text in one format (:mod:`.grids`),
without a chat template, so that what TTT trains on is exactly what the probes ask.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from seal_lm.adapt.lora import InnerLoopSettings, TrainPlan
from seal_lm.domains.arc.augment import Augmentation, augmentations
from seal_lm.domains.arc.config import CONFIG_INSTRUCTIONS, ConfigRejected, TTTConfig, check_step_budget, parse_config
from seal_lm.domains.arc.data import ArcTask
from seal_lm.domains.arc.grids import (
    END_MARKER,
    Grid,
    format_demonstrations,
    format_task,
    grid_to_lists,
    parse_completion,
)
from seal_lm.domains.arc.ttt import ttt_examples
from seal_lm.domains.arc.voting import vote
from seal_lm.model.generation import GenerationSettings
from seal_lm.model.prompting import PromptFormatter, PromptTemplate

SELF_EDIT_INTRO = (
    "You are setting up training for an abstract reasoning puzzle. Each example shows an input grid and "
    "the output grid that one hidden rule makes from it (one digit per cell, one row per line).\n\n"
    "{demonstrations}\n\n"
    "Choose the data augmentations and training settings that will best teach a model this rule. "
    "Reply with one JSON object in this form:\n{schema}"
)
SELF_EDIT_TEMPLATE = PromptTemplate(plain=SELF_EDIT_INTRO + "\n\nConfiguration:\n", user=SELF_EDIT_INTRO)

MAX_VIEWS = len(augmentations(["basic"]))  # identity and the 7 other symmetries of a square

# SEAL's ARC LoRA rank and alpha; the targets (attention q/v and the MLP) are our choice.
# lr, epochs and loss_on are replaced by each configuration's values.
ARC_INNER_LOOP = InnerLoopSettings(
    rank=128,
    alpha=16,
    target_modules=("q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"),
    lr=1e-4,
    epochs=2,
    max_seq_len=8192,
)


@dataclass(frozen=True)
class ArcSettings:
    """How ARC tasks become training plans and probe prompts."""

    max_examples: int = 250  # cap on TTT examples per plan (SEAL: about 250)
    permuted_copies: int = (
        1  # colour-permuted, shuffled copies of each augmented leave-one-out example (if the config asks)
    )
    views: int = MAX_VIEWS  # views of each test input voted over: identity, rotations, flips, transposes
    max_train_steps: int = 750  # configs needing more optimiser steps are rejected (reward 0)
    default_config: TTTConfig = field(default_factory=TTTConfig)  # what context_plan trains with
    answer_max_tokens: int = 30 * 31 + 8  # a 30x30 grid with its newlines, and the end marker
    inner_loop: InnerLoopSettings = field(default_factory=lambda: ARC_INNER_LOOP)
    seed: int = 0  # seeds augmentation sampling, colour permutations and shuffles

    def __post_init__(self):
        if not 1 <= self.views <= MAX_VIEWS:
            raise ValueError(f"views must be from 1 to {MAX_VIEWS}, got {self.views}")
        for name in ("max_examples", "max_train_steps", "answer_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.permuted_copies < 0:
            raise ValueError(f"permuted_copies must be 0 or more, got {self.permuted_copies}")


class ArcDomain:
    """ARC tasks in, augmented leave-one-out plans out, voted predictions graded against test outputs."""

    name = "arc"
    conditions = {"icl": "base", "ttt-oracle": "context", "self-edit": "self-edit"}
    reference = "ttt-oracle"
    metrics = ("correct",)

    def __init__(self, formatter: PromptFormatter, settings: ArcSettings = ArcSettings()):
        self.formatter = formatter
        self.settings = settings
        self.views = augmentations(["basic"])[: settings.views]
        # Greedy, stopped at the end marker that closes every output grid.
        self.answer_generation = GenerationSettings(max_new_tokens=settings.answer_max_tokens, stop=(END_MARKER,))

    def context_id(self, task: ArcTask) -> str:
        return task.id

    def self_edit_prompt(self, task: ArcTask) -> str:
        return self.formatter(
            SELF_EDIT_TEMPLATE, demonstrations=format_demonstrations(task.train), schema=CONFIG_INSTRUCTIONS
        )

    def parse_self_edit(self, task: ArcTask, text: str, truncated: bool = False) -> TrainPlan:
        try:
            config = parse_config(text)
        except ConfigRejected as err:
            if truncated:
                raise ConfigRejected(f"{err} (the self-edit was cut off at the token budget)") from None
            raise
        return self.plan_for_config(task, config)

    def context_plan(self, task: ArcTask) -> TrainPlan:
        """The plan of the default configuration (TTT with a fixed, given config)."""
        return self.plan_for_config(task, self.settings.default_config)

    def plan_for_config(self, task: ArcTask, config: TTTConfig) -> TrainPlan:
        """The TTT plan ``config`` describes; raises :class:`ConfigRejected` if it is over the step budget."""
        inner = replace(self.settings.inner_loop, lr=config.learning_rate, epochs=config.epochs, loss_on=config.loss_on)
        examples = ttt_examples(
            task.train,
            augmentations(config.families),
            rng=random.Random(f"{self.settings.seed}:{task.id}"),  # str seeds are stable across runs
            permuted_copies=self.settings.permuted_copies if config.colour_permutations else 0,
            max_examples=self.settings.max_examples,
            max_chars=inner.max_seq_len,
        )
        if not examples:
            raise ConfigRejected(
                f"no training example of task {task.id} fits in max_seq_len={inner.max_seq_len} tokens"
            )
        check_step_budget(len(examples), config.epochs, inner.batch_size, self.settings.max_train_steps)
        return TrainPlan(tuple(examples), inner)

    def probe_prompts(self, task: ArcTask) -> list[str]:
        """For each test input, one prompt per view (the view applied to demonstrations and test input)."""
        return [
            format_task([(view.apply(i), view.apply(o)) for i, o in task.train], view.apply(test_input))
            for test_input, _ in task.test
            for view in self.views
        ]

    def score(self, task: ArcTask, answers: Sequence[str]) -> list[dict]:
        """One record per probe; ``correct`` says whether the voted attempts solve that probe's test input.

        Every test input has the same number of views, so the mean of ``correct`` over the records is
        the share of test inputs solved.
        """
        per_test = len(self.views)
        if len(answers) != len(task.test) * per_test:
            raise ValueError(
                f"task {task.id} has {len(task.test) * per_test} probes ({len(task.test)} test inputs x "
                f"{per_test} views), got {len(answers)} answers"
            )
        records = []
        for test_index, (_, gold) in enumerate(task.test):
            texts = answers[test_index * per_test : (test_index + 1) * per_test]
            predictions = [_prediction(view, text) for view, text in zip(self.views, texts)]
            attempt_1, attempt_2 = (vote(predictions, attempts=2) + [None, None])[:2]
            solved = gold is not None and gold in (attempt_1, attempt_2)
            for view, text, prediction in zip(self.views, texts, predictions):
                records.append(
                    {
                        "test_index": test_index,
                        "view": view.name,
                        "raw_answer": text,
                        "parsed": prediction is not None,
                        "prediction": _lists(prediction),
                        "attempt_1": _lists(attempt_1),
                        "attempt_2": _lists(attempt_2),
                        "gold": _lists(gold),
                        "correct": solved,
                    }
                )
        return records


def _prediction(view: Augmentation, text: str) -> Grid | None:
    """The grid an answer on ``view`` predicts for the original test input, or None."""
    grid = parse_completion(text)
    return None if grid is None else view.invert(grid)


def _lists(grid: Grid | None) -> list[list[int]] | None:
    return None if grid is None else grid_to_lists(grid)
