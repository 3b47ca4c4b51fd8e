"""The ``seal`` command: ``seal demo``, ``seal eval knowledge|arc`` and ``seal train knowledge|arc``.

Each command is a function over a config dataclass; its fields are the command's flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from seal_lm.cli.arc_subset import SelectSubsetConfig, select_subset
from seal_lm.cli.demo import DemoConfig, demo
from seal_lm.cli.eval_arc import EvalArcConfig, eval_arc
from seal_lm.cli.eval_knowledge import EvalKnowledgeConfig, eval_knowledge
from seal_lm.cli.options import add_config_flags, config_from_args
from seal_lm.cli.train import TrainArcConfig, TrainKnowledgeConfig, train_arc, train_knowledge
from seal_lm.domains.knowledge.grading import JudgeError
from seal_lm.runs.rundir import RunDirError

USER_ERRORS = (ValueError, RunDirError, JudgeError)  # bad data, models, settings and self-edits are ValueErrors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seal", description="Self-adapting language models (SEAL).")
    commands = parser.add_subparsers(dest="command", required=True)
    add_config_flags(commands.add_parser("demo", help="Learn one passage from a self-edit, before/after."), DemoConfig)
    evaluate = commands.add_parser("eval", help="Evaluate the paper's conditions on a domain.")
    domains = evaluate.add_subparsers(dest="domain", required=True)
    add_config_flags(domains.add_parser("knowledge", help="Single-passage knowledge incorporation (SQuAD)."), EvalKnowledgeConfig)
    add_config_flags(domains.add_parser("arc", help="Few-shot abstract reasoning with test-time training (ARC)."), EvalArcConfig)
    arc = commands.add_parser("arc", help="ARC utilities.")
    arc_commands = arc.add_subparsers(dest="domain", required=True)
    add_config_flags(arc_commands.add_parser("select-subset", help="Tasks an oracle TTT configuration solves."), SelectSubsetConfig)
    train = commands.add_parser("train", help="Train the self-edit policy with ReST-EM.")
    train_domains = train.add_subparsers(dest="domain", required=True)
    add_config_flags(train_domains.add_parser("knowledge", help="Knowledge incorporation (SQuAD)."), TrainKnowledgeConfig)
    add_config_flags(train_domains.add_parser("arc", help="ARC test-time-training configurations."), TrainArcConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)  # raised inside peft
    try:
        if args.command == "demo":
            demo(config_from_args(DemoConfig, args))
        elif args.command == "eval" and args.domain == "knowledge":
            eval_knowledge(config_from_args(EvalKnowledgeConfig, args))
        elif args.command == "eval" and args.domain == "arc":
            eval_arc(config_from_args(EvalArcConfig, args))
        elif args.command == "arc" and args.domain == "select-subset":
            select_subset(config_from_args(SelectSubsetConfig, args))
        elif args.command == "train" and args.domain == "knowledge":
            train_knowledge(config_from_args(TrainKnowledgeConfig, args))
        elif args.command == "train" and args.domain == "arc":
            train_arc(config_from_args(TrainArcConfig, args))
    except USER_ERRORS as err:
        print(f"seal: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seal: interrupted; finished work is saved, re-run the same command to resume.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
