"""Benchmark: does a label-free reward (probes made without labels) rank candidate self-edits like the gold reward?

For each of the first ``--n-passages`` eval200 passages: up to ``--probe-count`` probes (``--probe-source
model``: question/answer pairs the model writes with the passage in its prompt, kept only if the
passage supports the answer; ``cloze``: fill-in-the-blank sentences of the passage; see
``seal_lm.continual.probes``), and ``--k`` self-edits. Each usable self-edit trains a fresh
adapter (the paper's inner loop), which then answers, without the passage, both the gold questions
(the gold reward: share correct) and the model's probes (the label-free reward: share of the
model's own reference answers matched). Reported, with the Spearman rank correlation of
``seal_lm.continual.metrics``:

- within a passage: the correlation over its candidates (SEAL's use: picking the best of k), the
  mean ± standard error over passages where both rewards vary;
- pooled over all candidates, on the rewards and on the gains over the untrained model;
- how often the label-free reward's pick is also a best candidate by the gold reward, and the gold
  reward lost when it is not.

Unusable self-edits are left out of the correlations (both rewards would be 0 by rule, not by
measurement), and so are passages whose probes were all dropped (their candidates are not trained). Records go to a resumable run
directory, and the table is appended to BENCHMARKS.md:

    python benchmarks/label_free_reward.py --n-passages 20 --k 5 --out runs/bench-label-free-20
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import statistics
import time
from dataclasses import asdict, replace

from common import SQUAD, command, machine, publish

from seal_lm import (
    InnerLoop,
    InnerLoopSettings,
    KnowledgeDomain,
    KnowledgeSettings,
    PromptFormatter,
    load_model,
    load_passages,
)
from seal_lm.continual.metrics import estimate, spearman
from seal_lm.continual.probes import cloze_probes
from seal_lm.domains.base import SelfEditRejected
from seal_lm.domains.knowledge.data import PASSAGE_ID_RECORDS, short_id
from seal_lm.loops.continual import write_probes
from seal_lm.model.generation import GenerationSettings
from seal_lm.runs.rundir import RunDir

RECORDS = "records.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-passages", type=int, default=20)
    parser.add_argument("--k", type=int, default=5, help="Candidate self-edits per passage.")
    parser.add_argument("--probe-count", type=int, default=5)
    parser.add_argument(
        "--probe-source",
        choices=["model", "cloze"],
        default="model",
        help="model: pairs the model writes; cloze: fill-in-the-blank sentences of the passage.",
    )
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="Self-edit sampling temperature (SEAL's RL: 1.0)."
    )
    parser.add_argument("--model", default="bundled:smollm2-135m-instruct")
    parser.add_argument("--target-modules", default="all-linear")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=320, help="Token budget of a self-edit and of the probes.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench-label-free-20")
    parser.add_argument("--no-append", action="store_true", help="Print the section only; leave BENCHMARKS.md alone.")
    args = parser.parse_args()

    run = RunDir.open(args.out, vars(args) | {"out": None, "no_append": None}, records_format=PASSAGE_ID_RECORDS)
    done = {record["passage_id"]: record for record in run.records(RECORDS)}
    passages = load_passages(SQUAD / "eval200.json")[: args.n_passages]
    start = time.time()
    if len(done) < len(passages):
        loaded = load_model(args.model)
        inner = InnerLoopSettings(
            target_modules=tuple(args.target_modules.split(",")), epochs=args.epochs, seed=args.seed
        )
        domain = KnowledgeDomain(PromptFormatter(loaded.tokenizer, loaded.chat), KnowledgeSettings(inner_loop=inner))
        loop = InnerLoop(loaded.model, loaded.tokenizer)
        for passage in passages:
            if passage.id not in done:
                done[passage.id] = score_passage(passage, domain, loop, args)
                run.append(RECORDS, done[passage.id])
                print(
                    f"{short_id(passage.id)}: gold {fmt(done[passage.id]['gold'])}, label-free {fmt(done[passage.id]['label_free'])}"
                )
    records = [done[p.id] for p in passages]
    run.write_json("summary.json", summarize(records))
    publish(section(args, summarize(records), time.time() - start), append=not args.no_append)


def score_passage(passage, domain: KnowledgeDomain, loop: InnerLoop, args) -> dict:
    """Probes and k candidates for one passage; every candidate's gold and label-free reward, and the base model's."""
    clock = time.perf_counter()
    probe_generation = GenerationSettings(max_new_tokens=args.max_tokens, seed=args.seed)
    if args.probe_source == "cloze":
        written, probe_text = cloze_probes(passage.context, title=passage.title, count=args.probe_count), None
        probe_counts = {"kept": len(written), "malformed": 0, "dropped": 0}
    else:
        written_by_model, raw = write_probes(loop, domain, passage, args.probe_count, probe_generation)
        written, probe_text, probe_counts = written_by_model.probes, raw.text, written_by_model.summary()
    if not written:  # nothing to compare the gold reward with: the passage is left out, untrained
        return {
            "passage_id": passage.id,
            "probes": [],
            "probe_counts": probe_counts,
            "probe_text": probe_text,
            "rejected_self_edits": 0,
            "base": None,
            "gold": [],
            "label_free": [],
            "seconds": round(time.perf_counter() - clock, 1),
        }
    probes = replace(passage, questions=written)
    prompts = domain.probe_prompts(passage) + domain.probe_prompts(probes)
    sampling = GenerationSettings(
        max_new_tokens=args.max_tokens, temperature=args.temperature, top_p=0.95, seed=args.seed, batch_size=args.k
    )
    edits = loop.generate_with_base([domain.self_edit_prompt(passage)] * args.k, sampling)
    plans, rejected = [], 0
    for index, edit in enumerate(edits):
        try:
            plan = domain.parse_self_edit(passage, edit.text, edit.truncated)
        except SelfEditRejected:
            rejected += 1
            continue
        plans.append(replace(plan, settings=replace(plan.settings, seed=args.seed + index)))
    answer_sets = [loop.generate_with_base(prompts, domain.answer_generation)]
    answer_sets += [result.answers for result in loop.train_and_answer(plans, prompts, domain.answer_generation)]
    gold, label_free = [], []
    for answers in answer_sets:
        texts = [answer.text for answer in answers]
        gold.append(share_correct(domain, passage, texts[: len(passage.questions)]))
        label_free.append(share_correct(domain, probes, texts[len(passage.questions) :]))
    return {
        "passage_id": passage.id,
        "probes": [asdict(q) for q in written],
        "probe_counts": probe_counts,
        "rejected_self_edits": rejected,
        "base": {"gold": gold[0], "label_free": label_free[0]},
        "gold": gold[1:],
        "label_free": label_free[1:],
        "seconds": round(time.perf_counter() - clock, 1),
    }


def share_correct(domain: KnowledgeDomain, passage, answers: list[str]) -> float | None:
    """Share of the passage's questions answered correctly (None when it has none)."""
    grades = domain.score(passage, answers)
    return sum(g["correct"] for g in grades) / len(grades) if grades else None


def summarize(records: list[dict]) -> dict:
    """Agreement of the two rewards, within passages and pooled, and how the label-free pick fares."""
    usable = [r for r in records if r["probes"] and r["gold"]]
    within = [spearman(r["gold"], r["label_free"]) for r in usable if len(r["gold"]) > 1]
    within = [value for value in within if not math.isnan(value)]
    pooled = [(g, f) for r in usable for g, f in zip(r["gold"], r["label_free"])]
    gains = [
        (g - r["base"]["gold"], f - r["base"]["label_free"]) for r in usable for g, f in zip(r["gold"], r["label_free"])
    ]
    picks = [r["gold"][r["label_free"].index(max(r["label_free"]))] for r in usable]
    return {
        "passages": len(records),
        "passages_with_probes": sum(1 for r in records if r["probes"]),
        "passages_scored": len(usable),
        "candidates_scored": len(pooled),
        "rejected_self_edits": sum(r["rejected_self_edits"] for r in records),
        "probe_counts": {
            key: statistics.fmean(r["probe_counts"][key] for r in records) for key in ("kept", "malformed", "dropped")
        },
        "within_passage_spearman": asdict(estimate(within)) if within else None,
        "pooled_spearman_rewards": _pooled_spearman(pooled),
        "pooled_spearman_gains": _pooled_spearman(gains),
        "label_free_pick_is_gold_best": sum(pick == max(r["gold"]) for pick, r in zip(picks, usable)),
        "mean_gold_regret_of_label_free_pick": statistics.fmean(max(r["gold"]) - pick for pick, r in zip(picks, usable))
        if usable
        else None,
        "mean_gold_reward": statistics.fmean(g for g, _ in pooled) if pooled else None,
        "mean_label_free_reward": statistics.fmean(f for _, f in pooled) if pooled else None,
        "seconds_per_passage": statistics.fmean(r["seconds"] for r in records) if records else None,
    }


def section(args, summary: dict, wall: float) -> str:
    within = summary["within_passage_spearman"]
    rows = [
        (
            "passages (with ≥1 kept probe / scored)",
            f"{summary['passages']} ({summary['passages_with_probes']} / {summary['passages_scored']})",
        ),
        (
            "probes per passage: kept / malformed / dropped",
            " / ".join(f"{v:.1f}" for v in summary["probe_counts"].values()),
        ),
        (
            "candidates scored (unusable self-edits left out)",
            f"{summary['candidates_scored']} ({summary['rejected_self_edits']} unusable)",
        ),
        (
            "Spearman within a passage, mean ± SE (passages where both vary)",
            f"{within['mean']:.3f} ± {within['stderr'] or 0:.3f} (n={within['n']})"
            if within
            else "undefined (no passage where both rewards vary)",
        ),
        ("Spearman pooled over candidates: rewards", fmt(summary["pooled_spearman_rewards"])),
        ("Spearman pooled over candidates: gains over the base model", fmt(summary["pooled_spearman_gains"])),
        (
            "label-free pick is a gold-best candidate",
            f"{summary['label_free_pick_is_gold_best']} / {summary['passages_scored']}",
        ),
        ("mean gold reward lost by the label-free pick", fmt(summary["mean_gold_regret_of_label_free_pick"])),
        (
            "mean reward: gold / label-free",
            f"{fmt(summary['mean_gold_reward'])} / {fmt(summary['mean_label_free_reward'])}",
        ),
    ]
    table = "\n".join(["| measure | value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows])
    return f"""
## Label-free reward vs gold reward: {args.k} self-edits on each of {args.n_passages} eval200 passages ({dt.date.today()})

Command: `{command()}`
Machine: {machine()}; wall time of this invocation {wall / 60:.1f} min ({fmt(summary["seconds_per_passage"])} s per passage).
Model {args.model}, LoRA on {args.target_modules}, {args.epochs} epochs; self-edits at temperature {args.temperature};
up to {args.probe_count} probes per passage ({"written by the model" if args.probe_source == "model" else "fill-in-the-blank sentences of the passage"}). Records: `{args.out}/records.jsonl`.

{table}
"""


def fmt(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _pooled_spearman(pairs: list[tuple[float, float]]) -> float | None:
    return spearman([a for a, _ in pairs], [b for _, b in pairs]) if len(pairs) > 1 else None


if __name__ == "__main__":
    main()
