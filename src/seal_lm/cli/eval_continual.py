"""``seal eval continual``: the paper's forgetting experiment, naive sequential merging vs the retention guard."""

from __future__ import annotations

import io
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from seal_lm.cli.continual_options import ContinualOptions, naive
from seal_lm.cli.options import defaults, option
from seal_lm.cli.report import see_it
from seal_lm.continual.guards import ACTIONS
from seal_lm.continual.versions import COMMIT_MODES
from seal_lm.domains.knowledge.data import PASSAGE_ID_RECORDS
from seal_lm.loops.continual import PROBE_SOURCES
from seal_lm.loops.forgetting import forgetting_results, run_forgetting, sequences_of
from seal_lm.runs.rundir import RunDir, default_run_path

log = logging.getLogger(__name__)

SUMMARIES = ("average_accuracy", "backward_transfer", "forgetting")


@dataclass
class EvalContinualConfig(ContinualOptions):
    n_passages: int = option(8, "Passages learned one after another in each sequence (T; the paper: 8).")
    sequences: int = option(3, "Sequences, each a seeded sample of --n-passages passages of --data in random order.")
    guard: bool = option(
        False, "Also run the guarded condition (retention guard, replay; --on-forgetting etc.) beside naive merging."
    )
    commit: str = option(
        "stack",
        "What each step's ledger version stores: stack its adapter (small), merge the merged layers.",
        COMMIT_MODES,
    )
    probes: str = option(
        "model",
        "The guard's probes: model (written by the model; the gold questions are only used to evaluate), cloze (fill-in-the-blank sentences of the passage), gold (an oracle guard).",
        PROBE_SOURCES,
    )
    on_forgetting: str = option(
        "retry-with-replay", "When the guard sees retention drop more than --retention-tolerance.", ACTIONS
    )


def eval_continual(config: EvalContinualConfig) -> Path:
    """Run (or resume) the experiment and write results.json, results.md and forgetting.png; returns the run directory."""
    settings = config.continual_settings()
    sequences = sequences_of(config.passages(), config.n_passages, config.sequences, config.seed)
    conditions = {"naive": naive(settings)} | ({"guarded": settings} if config.guard else {})
    with RunDir.open(
        config.out or default_run_path("eval-continual"),
        asdict(config) | {"out": None},
        defaults(config),
        PASSAGE_ID_RECORDS,
    ) as run:
        log.info("Run directory: %s", run.path)
        records = run_forgetting(run, sequences, conditions, config.open_learner)
        results = forgetting_results(records, list(conditions), config.sequences, config.n_passages)
        run.write_json("results.json", results)
        table = markdown_summary(results)
        run.write_text("results.md", table)
        run.write_bytes("forgetting.png", heatmap_png(results))
        print(f"\n{table}\nWritten to {run.path} (results.json, results.md, forgetting.png)\n{see_it(run.path)}")
        return run.path


def markdown_summary(results: dict) -> str:
    """The summaries per condition (mean ± standard error over sequences), then each condition's mean matrix."""
    lines = [
        "| condition | average accuracy | backward transfer | forgetting | accepted | rejected | retried |",
        "|---|---|---|---|---|---|---|",
    ]
    for condition, result in results["conditions"].items():
        estimates = [_estimate_text(result["summary"][name]) for name in SUMMARIES]
        decisions = result["decisions"]
        lines.append(
            f"| {condition} | {' | '.join(estimates)} | {decisions.get('accepted', 0)} | {decisions.get('rejected', 0)} | {result['retried']} |"
        )
    length = results["passages_per_sequence"]
    lines += [
        "",
        f"Mean accuracy over {results['sequences']} sequences; row: after learning passages 1..i; column: passage j.",
        "",
    ]
    for condition, result in results["conditions"].items():
        lines += [
            f"**{condition}**",
            "",
            "| | " + " | ".join(f"p{j + 1}" for j in range(length)) + " |",
            "|---" * (length + 1) + "|",
        ]
        rows = [("before", results["mean_before"])] + [
            (f"after {i + 1}", row) for i, row in enumerate(result["mean_matrix"])
        ]
        for name, row in rows:
            lines.append(f"| {name} | " + " | ".join("" if value is None else f"{value:.2f}" for value in row) + " |")
        lines.append("")
    return "\n".join(lines)


def heatmap_png(results: dict) -> bytes:
    """One heatmap per condition: the mean accuracy matrix under the before row, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = results["conditions"]
    length = results["passages_per_sequence"]
    size = (1.2 + (0.5 * length + 0.6) * len(conditions), 1.0 + 0.45 * (length + 1))
    figure, axes = plt.subplots(1, len(conditions), figsize=size, squeeze=False, sharey=True, layout="constrained")
    for axis, (condition, result) in zip(axes[0], conditions.items()):
        rows = [results["mean_before"], *result["mean_matrix"]]
        grid = [[math.nan if value is None else value for value in row] for row in rows]
        image = axis.imshow(grid, vmin=0, vmax=1, cmap="viridis")
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                if not math.isnan(value):
                    axis.text(
                        j,
                        i,
                        f"{value:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if value < 0.6 else "black",
                    )
        summary = result["summary"]
        axis.set_title(
            f"{condition}\naverage {summary['average_accuracy']['mean']:.2f}, BWT {summary['backward_transfer']['mean']:+.2f}, "
            f"forgetting {summary['forgetting']['mean']:.2f}",
            fontsize=8,
        )
        axis.set_xticks(range(length), [f"p{j + 1}" for j in range(length)], fontsize=7)
        axis.set_yticks(range(length + 1), ["before"] + [f"after {i + 1}" for i in range(length)], fontsize=7)
        axis.set_xlabel("passage (in learning order)", fontsize=8)
    figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="accuracy")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    return buffer.getvalue()


def _estimate_text(estimate: dict) -> str:
    spread = f" ± {estimate['stderr']:.3f}" if estimate["stderr"] is not None else ""
    return f"{estimate['mean']:.3f}{spread}"
