"""``seal arc select-subset``: the tasks an oracle test-time-training configuration solves with a model.

SEAL chose its ARC subset this way: tasks known to be solvable by the best TTT settings, so that a
self-edit has something to win. This runs the ``ttt-oracle`` condition over small-grid candidate
tasks (resumable, like every run) and writes the solved ids to ``subset.json`` in the run directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from seal_lm.cli.eval_arc import EvalArcConfig, eval_arc
from seal_lm.cli.options import option
from seal_lm.domains.arc.data import ArcTask


@dataclass
class SelectSubsetConfig(EvalArcConfig):
    conditions: tuple[str, ...] = option(("ttt-oracle",), "Fixed: the subset is what ttt-oracle solves.")
    max_grid_side: int = option(10, "Candidate tasks have every grid at most this many cells wide and high.")
    max_tasks: int = option(0, "Try at most this many candidates, in id order (0: all).")


def select_subset(config: SelectSubsetConfig) -> Path:
    """Run the oracle on the candidates; returns the path of the written ``subset.json``."""
    if config.conditions != ("ttt-oracle",):
        raise ValueError("select-subset runs only the ttt-oracle condition; leave --conditions unset.")
    candidates = [task for task in config.arc_tasks() if _fits(task, config.max_grid_side)]
    candidates = candidates[: config.max_tasks] if config.max_tasks else candidates
    if not candidates:
        raise ValueError(
            f"no task has every grid within {config.max_grid_side}x{config.max_grid_side}; raise --max-grid-side."
        )
    run_path = eval_arc(config, candidates)
    records = [json.loads(line) for line in (run_path / "records.jsonl").read_text().splitlines()]
    selected = sorted(r["context_id"] for r in records if all(g["correct"] for g in r["grades"]))
    subset = {
        "selected": selected,
        "tried": [t.id for t in candidates],
        "model": config.model,
        "oracle_config": config.oracle_config or "default",
        "max_grid_side": config.max_grid_side,
    }
    target = run_path / "subset.json"
    target.write_text(json.dumps(subset, indent=2) + "\n")
    print(f"{len(selected)} of {len(candidates)} candidate tasks solved by the oracle configuration: {target}")
    return target


def _fits(task: ArcTask, side: int) -> bool:
    grids = [g for pair in task.train + task.test for g in pair if g is not None]
    return all(len(g) <= side and len(g[0]) <= side for g in grids)
