"""Turn unit records into the results table: accuracy, exact match, F1, standard errors, and paired
bootstrap intervals against the "passage only" condition.

Uncertainty is computed by resampling *contexts* (questions about one passage are not independent),
with ``k`` samples of a condition first averaged per question.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

METRICS = ("correct", "exact_match", "f1")


def per_question_scores(records: Sequence[dict], metric: str) -> dict[str, dict[str, dict[str, float]]]:
    """condition → context id → probe index → score averaged over the condition's samples."""
    sums: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for record in records:
        for index, grade in enumerate(record["grades"]):
            sums[record["condition"]][record["context_id"]][index].append(float(grade[metric]))
    return {
        condition: {ctx: {q: float(np.mean(v)) for q, v in questions.items()} for ctx, questions in contexts.items()}
        for condition, contexts in sums.items()
    }


def _context_totals(scores: dict[str, dict[str, float]], context_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-context (sum of question scores, number of questions)."""
    sums = np.array([sum(scores[c].values()) for c in context_ids])
    counts = np.array([len(scores[c]) for c in context_ids])
    return sums, counts


def summarize(
    records: Sequence[dict],
    bootstrap_samples: int = 2000,
    seed: int = 0,
    reference: str | None = "passage",
    metrics=METRICS,
) -> dict:
    """The results table as a dict: one row per condition, in the order the records first name them.

    Each condition is compared with ``reference`` (paired bootstrap) when both are present.
    """
    conditions = list(dict.fromkeys(r["condition"] for r in records))
    scores = {metric: per_question_scores(records, metric) for metric in metrics}
    if records and all(
        "judge" in g for r in records for g in r["grades"]
    ):  # a partly judged run is reported without the judge
        scores["judge"] = per_question_scores(records, "judge")
    rng = np.random.default_rng(seed)
    rows = {}
    for condition in conditions:
        context_ids = sorted(scores["correct"][condition])
        draws = rng.integers(0, len(context_ids), size=(bootstrap_samples, len(context_ids)))
        sums, counts = _context_totals(scores["correct"][condition], context_ids)
        boot = sums[draws].sum(1) / counts[draws].sum(1)
        unit_records = [r for r in records if r["condition"] == condition]
        trained = [r["train"] for r in unit_records if r["train"]]
        grades = [g for r in unit_records for g in r["grades"]]
        row = {
            "contexts": len(context_ids),
            "questions": int(counts.sum()),
            "units": len(unit_records),
            "accuracy": float(sums.sum() / counts.sum()),
            "accuracy_se": float(boot.std(ddof=1)) if len(context_ids) > 1 else None,
            **{metric: _mean(scores[metric][condition]) for metric in metrics if metric != "correct"},
            "judge_accuracy": _mean(scores["judge"][condition]) if "judge" in scores else None,
            "mean_answer_words": float(np.mean([len(g["answer"].split()) for g in grades]))
            if all("answer" in g for g in grades)
            else None,
            "rejected_self_edits": sum(1 for r in unit_records if r["rejected"]),
            "truncated_self_edits": sum(1 for r in unit_records if (r["self_edit"] or {}).get("truncated")),
            "mean_trained_tokens": float(np.mean([t["tokens"] for t in trained])) if trained else 0.0,
            "mean_train_sequences": float(np.mean([len(t["sequences"]) for t in trained])) if trained else 0.0,
            "mean_unit_seconds": float(np.mean([r["seconds"] for r in unit_records])),
        }
        if reference in scores["correct"] and condition != reference:
            row["vs_reference"] = paired_difference(
                scores["correct"][condition], scores["correct"][reference], bootstrap_samples, rng
            )
        rows[condition] = row
    return {"conditions": rows, "reference": reference, "bootstrap_samples": bootstrap_samples}


def paired_difference(
    a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], samples: int, rng: np.random.Generator
) -> dict | None:
    """Accuracy of ``a`` minus ``b`` over their shared contexts, with a 95% paired bootstrap interval."""
    shared = sorted(set(a) & set(b))
    if not shared:
        return None
    sums_a, counts = _context_totals(a, shared)
    sums_b, _ = _context_totals(b, shared)
    draws = rng.integers(0, len(shared), size=(samples, len(shared)))
    boot = (sums_a[draws].sum(1) - sums_b[draws].sum(1)) / counts[draws].sum(1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"difference": float((sums_a.sum() - sums_b.sum()) / counts.sum()), "ci95": [float(low), float(high)]}


def _mean(scores: dict[str, dict[str, float]]) -> float:
    values = [v for questions in scores.values() for v in questions.values()]
    return float(np.mean(values)) if values else 0.0


METRIC_LABELS = {"exact_match": "exact match", "f1": "F1"}


def markdown_table(summary: dict, accuracy_label: str = "accuracy (contains)") -> str:
    """The summary as a Markdown table (percentages)."""
    rows = summary["conditions"].values()
    extra = [m for m in METRIC_LABELS if all(m in row for row in rows)]
    has_judge = any(row["judge_accuracy"] is not None for row in rows)
    has_words = all(row["mean_answer_words"] is not None for row in rows)
    header = ["condition", "probes", accuracy_label, "± SE", *(METRIC_LABELS[m] for m in extra)]
    header += ["judge"] if has_judge else []
    header += [f"Δ vs {summary['reference']} [95% CI]"] if summary.get("reference") else []
    header += ["answer words"] if has_words else []
    header += ["trained tokens", "train seqs", "rejected", "truncated edits", "s / unit"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for condition, row in summary["conditions"].items():
        diff = row.get("vs_reference")
        cells = [condition, str(row["questions"]), f"{100 * row['accuracy']:.1f}"]
        cells += ["" if row["accuracy_se"] is None else f"{100 * row['accuracy_se']:.1f}"]
        cells += [f"{100 * row[m]:.1f}" for m in extra]
        cells += [f"{100 * row['judge_accuracy']:.1f}"] if has_judge else []
        if summary.get("reference"):
            cells += [
                ""
                if not diff
                else f"{100 * diff['difference']:+.1f} [{100 * diff['ci95'][0]:+.1f}, {100 * diff['ci95'][1]:+.1f}]"
            ]
        cells += [f"{row['mean_answer_words']:.1f}"] if has_words else []
        cells += [
            f"{row['mean_trained_tokens']:.0f}",
            f"{row['mean_train_sequences']:.1f}",
            str(row["rejected_self_edits"]),
            str(row["truncated_self_edits"]),
            f"{row['mean_unit_seconds']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
