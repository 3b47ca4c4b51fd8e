"""One section of the report per kind of run: what the template shows, read from the runs' records.

Each function takes the runs of one kind (compared side by side) and returns a plain dict for the
template. Table numbers are results.json's own values, never recomputed; figures draw them, or the
per-unit records the tables were made from.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from statistics import fmean
from typing import Any

from seal_lm.continual.ledger import Update
from seal_lm.domains.arc.data import TASK_RECORDS
from seal_lm.domains.arc.domain import ArcDomain
from seal_lm.domains.knowledge.domain import KnowledgeDomain
from seal_lm.loops.evaluate import JUDGEMENTS, RECORDS, per_context, results_table, with_judgements
from seal_lm.loops.report import per_question_scores
from seal_lm.loops.restem import SAMPLES
from seal_lm.report import charts
from seal_lm.report.runs import Run
from seal_lm.report.self_edits import COPIED_NGRAM, MEASURES, SHARES, SelfEdit

SHOWN_PASSAGES = 3  # best and worst passages shown in full, each
SHOWN_CONTEXTS = 4  # contexts per ReST-EM round whose self-edits are shown in full
SHOWN_TASKS = 12  # ARC tasks drawn
EVALUATED_DOMAINS = {"eval-knowledge": KnowledgeDomain, "eval-arc": ArcDomain}  # run kind → its domain


# ---------------------------------------------------------------------------------------------
# eval knowledge and eval arc: the conditions table
# ---------------------------------------------------------------------------------------------


def eval_knowledge(runs: list[Run]) -> dict[str, Any]:
    """The conditions of each run (table and charts), the paired per-passage comparison, best and worst passages."""
    section = _conditions(runs, ("accuracy", "exact_match", "f1"))
    for entry in section["runs"]:
        run, summary = entry["run"], entry["summary"]
        records = [part for record in run.records(RECORDS) for part in per_context(record)]
        entry["judged"] = bool(judgements := run.records(JUDGEMENTS))
        entry["paired"] = _paired(summary, with_judgements(judgements, records), _passages(run))
    return section


def eval_arc(runs: list[Run]) -> dict[str, Any]:
    """The conditions of each run (share of test inputs solved), and each task's truth beside every configuration's attempts."""
    section = _conditions(runs, ("accuracy",), accuracy="solved")
    for entry in section["runs"]:
        entry["tasks"], entry["tasks_recorded"] = _arc_tasks(entry["run"])
    return section


def _conditions(runs: list[Run], metrics: tuple[str, ...], accuracy: str = "accuracy") -> dict[str, Any]:
    """Every run's results.json, and the charts comparing their conditions (``accuracy``: what the accuracy is called)."""
    entries = [{"run": run, **_results(run)} for run in runs]
    conditions = list(dict.fromkeys(c for entry in entries for c in entry["summary"]["conditions"]))
    reference = entries[0]["summary"].get("reference")
    labels = [entry["run"].label for entry in entries]

    def rows(condition: str) -> list[dict | None]:
        return [entry["summary"]["conditions"].get(condition) for entry in entries]

    figure, axes = charts.panels(len(metrics) + (1 if reference else 0))
    titles = {"accuracy": f"{accuracy} ± SE", "exact_match": "exact match", "f1": "F1"}
    for axis, metric in zip(axes, metrics):
        values = {label: [_get(rows(c)[i], metric) for c in conditions] for i, label in enumerate(labels)}
        errors = {
            label: [_symmetric(_get(rows(c)[i], "accuracy_se")) for c in conditions] for i, label in enumerate(labels)
        }
        charts.grouped_bars(
            conditions, values, errors if metric == "accuracy" else None, titles[metric], axis, share=True
        )
    if reference:
        compared = [c for c in conditions if c != reference]
        values = {
            label: [_get(_get(rows(c)[i], "vs_reference"), "difference") for c in compared]
            for i, label in enumerate(labels)
        }
        errors = {
            label: [_interval(_get(rows(c)[i], "vs_reference")) for c in compared] for i, label in enumerate(labels)
        }
        charts.grouped_bars(compared, values, errors, f"{accuracy} − {reference} [95% CI]", axes[-1])
    if len(labels) > 1:
        axes[0].legend(fontsize=7)
    section = {
        "runs": entries,
        "accuracy": accuracy,
        "reference": reference,
        "chart": charts.png_uri(figure),
        "across": None,
    }
    if len(runs) > 1:
        section["across"] = charts.lines_across(
            labels,
            {c: [_get(row, "accuracy") for row in rows(c)] for c in conditions},
            {c: [_get(row, "accuracy_se") for row in rows(c)] for c in conditions},
            f"{accuracy} per run ± SE",
            accuracy,
        )
    return section


def _results(run: Run) -> dict[str, Any]:
    """The run's results.json; for a run still going, the same table of the units recorded so far
    (``in_progress``: how many), made by the function that will write its results.json."""
    summary = run.json("results.json", required=False)
    if summary is not None:
        return {"summary": summary, "in_progress": None}
    records = [part for record in run.records(RECORDS) for part in per_context(record)]
    if not records:
        raise ValueError(f"{run.path}: no unit recorded yet; report it once the run has recorded some.")
    order = list(run.config["conditions"])
    records.sort(key=lambda record: order.index(record["condition"]))  # the table's rows in --conditions order
    judged = with_judgements(run.records(JUDGEMENTS), records)
    table = results_table(EVALUATED_DOMAINS[run.kind], judged, run.config["bootstrap_samples"])
    return {"summary": table, "in_progress": len(records)}


def _paired(summary: dict, records: list[dict], passages: dict[str, dict]) -> dict[str, Any] | None:
    """A condition against the reference passage by passage, and the best and worst passages with every unit's answers."""
    reference = summary.get("reference")
    others = [c for c in summary["conditions"] if c != reference]
    if reference not in summary["conditions"] or not others:
        return None
    compared = "self-edit" if "self-edit" in others else others[-1]
    scores = per_question_scores(records, "correct")
    shared = sorted(set(scores[compared]) & set(scores[reference]))
    differences = {
        ctx: fmean(scores[compared][ctx].values()) - fmean(scores[reference][ctx].values()) for ctx in shared
    }
    ranked = sorted(shared, key=lambda ctx: differences[ctx])
    best = ranked[::-1][:SHOWN_PASSAGES]
    worst = [ctx for ctx in ranked[:SHOWN_PASSAGES] if ctx not in best]
    order = list(summary["conditions"])
    by_context = defaultdict(list)
    for record in sorted(records, key=lambda r: (order.index(r["condition"]), r["sample"])):
        by_context[record["context_id"]].append(record)

    def shown(ctx: str) -> dict[str, Any]:
        passage = passages.get(by_context[ctx][0]["grades"][0]["question_id"], {})
        return {"id": ctx, "difference": differences[ctx], **passage, "units": by_context[ctx]}

    return {
        "compared": compared,
        "reference": reference,
        "wins": sum(d > 0 for d in differences.values()),
        "ties": sum(d == 0 for d in differences.values()),
        "losses": sum(d < 0 for d in differences.values()),
        "chart": charts.sorted_differences(
            list(differences.values()), f"{compared} − {reference}, per passage", "accuracy difference"
        )
        if shared
        else None,
        "best": [shown(ctx) for ctx in best],
        "worst": [shown(ctx) for ctx in worst],
    }


def _passages(run: Run) -> dict[str, dict[str, str]]:
    """question id → its passage's title and text, from the run's squad_gold.json."""
    gold = run.json("squad_gold.json", required=False) or {"data": []}
    return {
        question["id"]: {"title": article["title"], "text": paragraph["context"]}
        for article in gold["data"]
        for paragraph in article["paragraphs"]
        for question in paragraph["qas"]
    }


def _arc_tasks(run: Run) -> tuple[list[dict[str, Any]], bool]:
    """Per task: its demonstrations and test grids, each test input's truth beside every configuration's two attempts.

    Also whether the run recorded its tasks (``tasks.jsonl``; runs made before it did show no demonstrations).
    """
    given = {record["task"]: record for record in run.records(TASK_RECORDS)}
    by_task = defaultdict(list)
    for record in run.records(RECORDS):
        by_task[record["context_id"]].append(record)
    tasks = []
    for task, units in list(by_task.items())[:SHOWN_TASKS]:
        test_indices = list(dict.fromkeys(g["test_index"] for g in units[0]["grades"]))
        figures = []
        for index in test_indices:
            first = [next(g for g in unit["grades"] if g["test_index"] == index) for unit in units]
            rows = [
                (
                    f"{unit['condition']} {unit['sample']}",
                    [
                        ("truth", grade["gold"]),
                        (f"attempt 1{' ✓' if grade['correct'] else ''}", grade["attempt_1"]),
                        ("attempt 2", grade["attempt_2"]),
                    ],
                )
                for unit, grade in zip(units, first)
            ]
            figures.append({"test": index + 1, "image": charts.arc_grids(rows)})
        examples = given.get(task)
        tasks.append(
            {
                "id": task,
                "examples": charts.arc_grids(_task_rows(examples)) if examples else None,
                "demonstrations": len(examples["train"]) if examples else None,
                "figures": figures,
                "units": units,
            }
        )
    return tasks, bool(given)


def _task_rows(task: dict) -> list[tuple[str, list[tuple[str, list[list[int]] | None]]]]:
    """A recorded task's grids as rows: each demonstration's input and output, then each test input and its output."""
    return [
        (f"demonstration {i + 1}", [("input", pair["input"]), ("output", pair["output"])])
        for i, pair in enumerate(task["train"])
    ] + [
        (
            f"test {i + 1}",
            [("input", pair["input"]), ("output" if "output" in pair else "output not given", pair.get("output"))],
        )
        for i, pair in enumerate(task["test"])
    ]


# ---------------------------------------------------------------------------------------------
# train knowledge|arc: ReST-EM rounds
# ---------------------------------------------------------------------------------------------


def train(runs: list[Run]) -> dict[str, Any]:
    """Each run's rounds: the summaries, the reward distributions, how self-edits changed, kept and rejected self-edits."""
    entries = []
    for run in runs:
        numbers = sorted(
            int(m.group(1)) for p in run.path.iterdir() if (m := re.fullmatch(r"round-(\d+)", p.name)) and p.is_dir()
        )
        rounds = []
        for number in numbers:
            samples = run.records(f"round-{number}/{SAMPLES}")
            written = [(s["text"], r["prompt"]) for r in samples for s in r["samples"]]
            kept = [(r["samples"][i]["text"], r["prompt"]) for r in samples for i in r["kept"]]
            rounds.append(
                {
                    "number": number,
                    "summary": run.json(f"round-{number}/summary.json", required=False),  # None while the round runs
                    "contexts": samples,
                    "shown": samples[:SHOWN_CONTEXTS],
                    "rewards": [reward for r in samples for reward in r["rewards"] if reward is not None],
                    "self_edits": len(written),
                    "kept": len(kept),
                    "shape": _shape(written, kept),
                }
            )
        entries.append({"run": run, "rounds": rounds})
    labels = [_round_label(entry["run"], r["number"], len(runs)) for entry in entries for r in entry["rounds"]]
    rounds = [r for entry in entries for r in entry["rounds"]]
    if not rounds:
        raise ValueError(f"{runs[0].path}: no round-N folder yet; the run has not started its first round.")
    return {
        "runs": entries,
        "measures": MEASURES,
        "shares": SHARES,
        "copied_ngram": COPIED_NGRAM,
        "rewards": charts.distributions(
            labels, [r["rewards"] for r in rounds], "rewards of the usable self-edits, per round", "reward"
        ),
        "shape": charts.lines_panels(
            labels,
            {
                title: {
                    "all self-edits": [r["shape"][name]["all"] for r in rounds],
                    "kept": [r["shape"][name]["kept"] for r in rounds],
                }
                for name, (title, _) in MEASURES.items()
            },
            shares=[MEASURES[name][0] for name in SHARES],
        ),
    }


def _round_label(run: Run, number: int, runs: int) -> str:
    return f"{run.label} r{number}" if runs > 1 else f"round {number}"


def _shape(written: list[SelfEdit], kept: list[SelfEdit]) -> dict[str, dict[str, float | None]]:
    """Each measure of a round's self-edits, over all of them and over the kept ones."""
    return {name: {"all": measure(written), "kept": measure(kept)} for name, (_, measure) in MEASURES.items()}


# ---------------------------------------------------------------------------------------------
# eval continual: forgetting; adapt and serve: the ledger
# ---------------------------------------------------------------------------------------------


def eval_continual(runs: list[Run]) -> dict[str, Any]:
    """Each run's summaries per condition, its heatmap, and each passage's accuracy right after its own update vs at the end."""
    entries = []
    for run in runs:
        results = run.json("results.json")
        heatmap = run.path / "forgetting.png"
        length = results["passages_per_sequence"]
        series = {}
        for condition, result in results["conditions"].items():
            matrix = result["mean_matrix"]
            series[f"{condition}: right after its update"] = [matrix[j][j] for j in range(length)]
            series[f"{condition}: at the end"] = [matrix[-1][j] for j in range(length)]
        entries.append(
            {
                "run": run,
                "results": results,
                "heatmap": charts.file_uri(heatmap.read_bytes()) if heatmap.is_file() else None,
                "own_vs_end": charts.lines_across(
                    [f"p{j + 1}" for j in range(length)], series, {}, "mean accuracy on passage j", "accuracy"
                ),
            }
        )
    return {"runs": entries}


def ledger(runs: list[Run]) -> dict[str, Any]:
    """Each run's ledger as a timeline: every update with its decision, probe and retention scores, and self-edit; rollbacks."""
    entries = []
    for run in runs:
        with run.ledger() as opened:
            updates, events, current = opened.updates(), opened.events(), opened.current()
        shown = [_update(update) for update in updates]
        rollbacks = [event for event in events if event.kind == "rollback"]
        positions = [max((u.id for u in updates if u.recorded <= event.at), default=0) + 0.5 for event in rollbacks]
        entries.append(
            {
                "run": run,
                "updates": shown,
                "rollbacks": rollbacks,
                "current": current.id if current else None,
                "decisions": dict(sorted(Counter(u.record.decision for u in updates).items())),
                "chart": charts.ledger_timeline(shown, positions) if updates else None,
            }
        )
    return {"runs": entries}


def _update(update: Update) -> dict[str, Any]:
    """One update attempt for the timeline: its record, each probe with its scores, and the mean scores."""
    record = update.record
    return {
        "id": update.id,
        "version": update.version,
        "recorded": update.recorded,
        "decision": record.decision,
        "record": record,
        "probes": list(zip(record.probes, record.scores_before, record.scores_after)),
        "probes_before": _mean(record.scores_before),
        "probes_after": _mean(record.scores_after),
        "retention_before": _mean(record.retention_before),
        "retention_after": _mean(record.retention_after),
    }


# ---------------------------------------------------------------------------------------------


def _get(row: dict | None, key: str) -> Any:
    return None if row is None else row.get(key)


def _symmetric(error: float | None) -> tuple[float, float] | None:
    return None if error is None else (error, error)


def _interval(difference: dict | None) -> tuple[float, float] | None:
    """A difference's 95% interval as lengths below and above it."""
    if not difference:
        return None
    low, high = difference["ci95"]
    return (difference["difference"] - low, high - difference["difference"])


def _mean(scores: list[float]) -> float | None:
    return fmean(scores) if scores else None
