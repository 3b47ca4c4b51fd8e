"""The ``seal`` command: ``seal demo``, ``seal eval knowledge|arc|continual``, ``seal train knowledge|arc``,
``seal adapt``, ``seal ledger list|show|diff|export``, ``seal rollback``, ``seal serve``, ``seal chat`` and ``seal report``.

Each command is a function over a config dataclass; its fields are the command's flags.
"""

from __future__ import annotations

import argparse
import logging
import sys

from tqdm.contrib.logging import logging_redirect_tqdm

from seal_lm import INTERRUPTED
from seal_lm.cli.adapt import AdaptConfig, adapt
from seal_lm.cli.arc_subset import SelectSubsetConfig, select_subset
from seal_lm.cli.chat import ChatConfig, chat
from seal_lm.cli.demo import DemoConfig, demo
from seal_lm.cli.eval_arc import EvalArcConfig, eval_arc
from seal_lm.cli.eval_continual import EvalContinualConfig, eval_continual
from seal_lm.cli.eval_knowledge import EvalKnowledgeConfig, eval_knowledge
from seal_lm.cli.ledger import (
    LedgerDiffConfig,
    LedgerExportConfig,
    LedgerListConfig,
    LedgerShowConfig,
    RollbackConfig,
    ledger_diff,
    ledger_export,
    ledger_list,
    ledger_show,
    rollback,
)
from seal_lm.cli.options import add_config_flags, config_from_args
from seal_lm.cli.report import ReportConfig, report
from seal_lm.cli.serve import ServeConfig, serve
from seal_lm.cli.shared_options import quiet_libraries
from seal_lm.cli.train import TrainArcConfig, TrainKnowledgeConfig, train_arc, train_knowledge
from seal_lm.continual.ledger import LedgerError
from seal_lm.domains.knowledge.grading import JudgeError
from seal_lm.runs.executor import ExecutorError
from seal_lm.runs.rundir import RunDirError
from seal_lm.threads import set_threads

USER_ERRORS = (
    ValueError,
    RunDirError,
    JudgeError,
    ExecutorError,
    LedgerError,
)  # bad data, models, settings and self-edits are ValueErrors

GROUPS = {
    "eval": "Evaluate the paper's conditions on a domain.",
    "train": "Train the self-edit policy with ReST-EM.",
    "arc": "ARC utilities.",
    "ledger": "Inspect (and export versions of) the update ledger of a seal adapt run.",
}
THREADS_HELP = (
    "Compute threads of this command, shared by everything it runs (worker processes, serving and learning); "
    "a setting of how to run, not recorded in the run (default 0: OMP_NUM_THREADS if set, else every usable core)."
)
# (group or None, command) → (help, config dataclass, function)
COMMANDS = {
    (None, "demo"): ("Learn one passage from a self-edit, before/after.", DemoConfig, demo),
    ("eval", "knowledge"): ("Single-passage knowledge incorporation (SQuAD).", EvalKnowledgeConfig, eval_knowledge),
    ("eval", "arc"): ("Few-shot abstract reasoning with test-time training (ARC).", EvalArcConfig, eval_arc),
    ("train", "knowledge"): ("Knowledge incorporation (SQuAD).", TrainKnowledgeConfig, train_knowledge),
    ("train", "arc"): ("ARC test-time-training configurations.", TrainArcConfig, train_arc),
    ("arc", "select-subset"): ("Tasks an oracle TTT configuration solves.", SelectSubsetConfig, select_subset),
    (None, "adapt"): (
        "Learn documents from a stream, one verified update (model version) at a time.",
        AdaptConfig,
        adapt,
    ),
    ("eval", "continual"): (
        "Forgetting under sequential updates: the accuracy matrix (SQuAD).",
        EvalContinualConfig,
        eval_continual,
    ),
    ("ledger", "list"): ("Every update attempt and rollback.", LedgerListConfig, ledger_list),
    ("ledger", "show"): ("One version and the update that made it.", LedgerShowConfig, ledger_show),
    ("ledger", "diff"): ("Tensor changes and updates between two versions.", LedgerDiffConfig, ledger_diff),
    ("ledger", "export"): ("Write a version as a Hugging Face model folder.", LedgerExportConfig, ledger_export),
    (None, "rollback"): ("Make an earlier model version current again.", RollbackConfig, rollback),
    (None, "serve"): ("Serve a model that keeps learning, behind an OpenAI-compatible API.", ServeConfig, serve),
    (None, "chat"): ("Talk to a run's current (or a pinned) version, or any model.", ChatConfig, chat),
    (None, "report"): ("One self-contained HTML page of runs, several of a kind side by side.", ReportConfig, report),
}

RESUMABLE = "every finished unit is saved in the run directory; re-run the same command to resume"
# What Ctrl-C leaves behind, for the commands that do not keep resumable units in a run directory.
KEPT_ON_INTERRUPT = {
    (None, "demo"): "the demo writes no files, so nothing is kept",
    (None, "adapt"): "the current document is abandoned and every version committed before it is kept in the ledger; "
    "re-run the same command to continue",
    (
        "eval",
        "continual",
    ): "every measured step is saved in the run directory and every committed version in its ledger; "
    "re-run the same command to resume",
    ("ledger", "list"): "nothing was changed",
    ("ledger", "show"): "nothing was changed",
    ("ledger", "diff"): "nothing was changed",
    ("ledger", "export"): "nothing was exported (the folder is moved into place only when complete)",
    (
        None,
        "rollback",
    ): "the rollback is one transaction: it happened entirely or not at all (seal ledger list shows which)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seal", description="Self-adapting language models (SEAL).")
    top = parser.add_subparsers(dest="command", required=True)
    groups = {
        name: top.add_parser(name, help=text).add_subparsers(dest="domain", required=True)
        for name, text in GROUPS.items()
    }
    for (group, name), (text, config_class, _) in COMMANDS.items():
        command = (groups[group] if group else top).add_parser(name, help=text)
        add_config_flags(command, config_class)
        command.add_argument("--threads", type=int, default=0, metavar="N", help=THREADS_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``seal`` command; the exit status: 0, 2 for a user error, 130 when interrupted (Ctrl-C)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    quiet_libraries()
    key = (args.command, args.domain) if args.command in GROUPS else (None, args.command)
    try:
        _, config_class, command = COMMANDS[key]
        config = config_from_args(config_class, args)
        set_threads(args.threads)
        with logging_redirect_tqdm():  # log lines print above the progress bars instead of through them
            command(config)
    except USER_ERRORS as err:
        print(f"seal: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nseal: interrupted; {KEPT_ON_INTERRUPT.get(key, RESUMABLE)}.", file=sys.stderr)
        return INTERRUPTED
    return 0
