"""Benchmark: how often the bundled model's ARC self-edits are usable configurations, free vs constrained.

For each task, ``--k`` configurations are sampled from the self-edit prompt (T=0.7, top-p 0.95, the
``seal eval arc`` defaults) as free text, as SEAL does, and under the configuration's JSON schema
(``--constrained-self-edits``). Each is parsed and, if it parses, its training plan is built with
``seal eval arc``'s settings for the CPU benchmark (24 examples), so the step budget is applied too.
No training runs: this measures only whether a self-edit can be used, and what the model chooses.

    python benchmarks/arc_config_validity.py --tasks 0d3d703e,25ff71a9,3c9b0459,6150a2bd --k 4
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import time
from dataclasses import replace

from common import command, machine, publish

from seal_lm.domains.arc.config import CONFIG_SCHEMA, ConfigRejected, parse_config
from seal_lm.domains.arc.data import load_tasks
from seal_lm.domains.arc.domain import ArcDomain, ArcSettings
from seal_lm.model.generation import GenerationSettings, generate
from seal_lm.model.loading import load_model
from seal_lm.model.prompting import PromptFormatter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="0d3d703e,25ff71a9,3c9b0459,6150a2bd", help="ARC-AGI-1 training task ids")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--no-append", action="store_true", help="Print the section only; leave BENCHMARKS.md alone.")
    args = parser.parse_args()
    loaded = load_model("bundled:smollm2-135m-instruct")
    arc = ArcDomain(PromptFormatter(loaded.tokenizer, loaded.chat), ArcSettings(max_examples=24))
    tasks = load_tasks(args.tasks.split(","), split="training")
    free = GenerationSettings(max_new_tokens=320, temperature=0.7, top_p=0.95)
    rows = [
        "| sampling | self-edits | parsed | within the step budget | seconds per self-edit | commonest rejection |",
        "|---|---|---|---|---|---|",
    ]
    chosen = []
    for label, settings in (
        ("free text (SEAL)", free),
        ("JSON schema (--constrained-self-edits)", replace(free, json_schema=json.dumps(CONFIG_SCHEMA))),
    ):
        prompts = [arc.self_edit_prompt(task) for task in tasks for _ in range(args.k)]
        start = time.perf_counter()
        generations = generate(loaded.model, loaded.tokenizer, prompts, settings)
        seconds = (time.perf_counter() - start) / len(prompts)
        parsed = usable = 0
        reasons = collections.Counter()
        for task, generation in zip((t for t in tasks for _ in range(args.k)), generations):
            try:
                config = parse_config(generation.text)
                parsed += 1
                if label.startswith("JSON"):
                    chosen.append(config)
                arc.parse_self_edit(task, generation.text, generation.truncated)  # also applies the step budget
                usable += 1
            except ConfigRejected as rejection:
                reasons[str(rejection).split(";")[0]] += 1
        commonest = f"{reasons.most_common(1)[0][0]} ({reasons.most_common(1)[0][1]})" if reasons else ""
        rows.append(f"| {label} | {len(prompts)} | {parsed} | {usable} | {seconds:.1f} | {commonest} |")
    choices = collections.Counter(
        f"{'+'.join([*c.families, *(['colour_permutations'] if c.colour_permutations else [])]) or 'nothing'}; "
        f"{c.strategy.removeprefix('train_using_')}, lr {c.learning_rate:g}, {c.epochs} epochs"
        for c in chosen
    )
    publish(
        f"\n## ARC self-edits: usable configurations, free text vs constrained decoding ({dt.date.today()})\n\n"
        f"Command: `{command()}`. Machine: {machine()}. Bundled model, tasks {args.tasks}, {args.k} samples each, T=0.7.\n\n"
        + "\n".join(rows)
        + "\n\nWhat the constrained samples chose (augmentations and colour permutations; loss, learning rate, epochs):\n\n"
        + "".join(f"- {choice} ×{count}\n" for choice, count in choices.most_common()),
        append=not args.no_append,
    )


if __name__ == "__main__":
    main()
