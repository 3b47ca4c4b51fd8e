"""``seal eval knowledge``: the paper's single-passage knowledge-incorporation table."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from seal_lm.adapt.full import FullFineTune
from seal_lm.adapt.lora import InnerLoopEngine
from seal_lm.cli.options import defaults, option
from seal_lm.cli.report import see_it
from seal_lm.cli.shared_options import ExecutorOptions, KnowledgeOptions
from seal_lm.domains.knowledge.data import (
    PASSAGE_ID_RECORDS,
    DataError,
    load_external_self_edits,
    short_id,
    to_official_squad,
)
from seal_lm.domains.knowledge.domain import KnowledgeDomain
from seal_lm.domains.knowledge.grading import JudgeError, LLMJudge
from seal_lm.loops.evaluate import (
    JUDGEMENTS,
    SAMPLED_KINDS,
    judge_answers,
    results_table,
    run_conditions,
    with_judgements,
)
from seal_lm.loops.report import markdown_table
from seal_lm.runs.rundir import RunDir, default_run_path

log = logging.getLogger(__name__)


@dataclass
class EvalKnowledgeConfig(ExecutorOptions, KnowledgeOptions):
    setting: Literal["single", "cpt"] = option(
        "single",
        "single trains a fresh adapter per passage, cpt (continued pretraining) one adapter (or, with "
        "--full-finetune, all weights) on all passages' data.",
    )
    conditions: tuple[str, ...] = option(
        ("base", "passage", "self-edit"), "Comma-separated.", KnowledgeDomain.conditions
    )
    n_passages: int = option(0, "Use the first N passages of --data (0: all).")
    k: int = option(1, "Self-edits per passage for self-edit/external; each trains its own fresh adapter.")
    external: str = option(
        "", "File of self-edits written elsewhere ({context, completions}), for the external condition."
    )
    judge_url: str = option(
        "", "OpenAI-compatible endpoint for the LLM judge, e.g. https://api.openai.com/v1 (off if empty)."
    )
    judge_model: str = option("gpt-4.1", "Judge model name.")
    judge_key_env: str = option("OPENAI_API_KEY", "Environment variable holding the judge's API key.")
    bootstrap_samples: int = option(2000, "Bootstrap resamples for standard errors and intervals.")
    full_finetune: bool = option(
        False,
        "With --setting cpt: train all weights instead of a LoRA adapter (the paper's v2), restored bit for bit after "
        "each condition; lower --lr for it (e.g. 1e-5; the default 1e-3 is LoRA's). Memory: about 4x the float32 "
        "weights, plus a copy of them in CPU memory.",
    )

    def check(self) -> None:
        """Also the settings only this command has, and which go together."""
        if self.n_passages < 0 or self.k < 1:
            raise ValueError("--n-passages must be 0 (all) or positive, and --k at least 1.")
        if self.setting == "cpt" and self.executor not in ("auto", "in-process"):
            raise ValueError("--setting cpt trains one adapter at a time on all passages, in-process: drop --executor.")
        if self.full_finetune:
            check_full_finetune(self)
        super().check()

    def inner_loop(self, model, tokenizer, spec: str) -> InnerLoopEngine:
        """With ``--full-finetune``, the engine that trains all weights; else the one ``--engine`` names."""
        if self.full_finetune:
            return FullFineTune(model, tokenizer, compute_dtype=self.autocast_dtype())
        return super().inner_loop(model, tokenizer, spec)


def check_full_finetune(config: EvalKnowledgeConfig) -> None:
    """Fail on a setting ``--full-finetune`` does not go with, naming the flag to change."""
    if config.setting != "cpt":
        raise ValueError(
            "--full-finetune trains all weights on the pooled passages of --setting cpt: add --setting cpt, or drop --full-finetune."
        )
    if config.inner_objective != "sft":
        raise ValueError(
            f"--full-finetune trains with --inner-objective sft only ({config.inner_objective}'s teacher is the model "
            "with its adapter disabled, and a full fine-tune has no adapter)."
        )
    if config.engine != "sequential" or config.generator != "hf" or config.compile:
        raise ValueError(
            "--full-finetune trains the model itself, one condition at a time: drop --engine, --generator and --compile "
            "(the batched engine and vLLM serve a fixed base model with adapters; --compile compiles the LoRA step)."
        )


def eval_knowledge(config: EvalKnowledgeConfig) -> Path:
    """Run the conditions table and write the run directory; returns its path."""
    passages = config.passages()  # checks the settings first
    passages = passages[: config.n_passages] if config.n_passages else passages
    external = _external_lookup(config, passages) if "external" in config.conditions else None
    make_domain = partial(KnowledgeDomain, settings=config.knowledge_settings())
    llm = LLMJudge(config.judge_url, config.judge_model, config.judge_key_env) if config.judge_url else None
    executor = config.start_executor(config.device, one_process=config.setting == "cpt")
    with RunDir.open(
        config.out or default_run_path("eval-knowledge"), config.run_config(), defaults(config), PASSAGE_ID_RECORDS
    ) as run:
        log.info("Run directory: %s", run.path)
        records = run_conditions(
            run,
            config.domain(make_domain),
            passages,
            partial(config.worker, make_domain),
            conditions=config.conditions,
            k=config.k,
            self_edit_generation=config.self_edit_generation(),
            external_self_edits=external,
            pooled=config.setting == "cpt",
            executor=executor,
        )
        failure = None
        if llm is not None:  # after the records are saved: a failing judge costs no trained work
            try:
                judge_answers(run, records, lambda grade: llm(grade["question"], grade["gold"], grade["answer"]))
            except JudgeError as err:
                failure = err
        write_outputs(run, passages, with_judgements(run.records(JUDGEMENTS), records), config.bootstrap_samples)
        if failure is not None:
            raise JudgeError(
                f"{failure} The trained records are kept and the table is written without the judge; re-run the same command to judge the rest."
            )
        return run.path


def _external_lookup(config: EvalKnowledgeConfig, passages):
    if not config.external:
        raise DataError("The external condition needs --external FILE (e.g. self-edits written by GPT-4.1).")
    by_context = load_external_self_edits(config.external)
    for passage in passages:
        completions = by_context.get(passage.context.strip())
        if completions is None:
            raise DataError(f"{config.external}: no self-edits for passage {short_id(passage.id)} ({passage.title!r}).")
        if len(completions) < config.k:
            raise DataError(
                f"{config.external}: passage {short_id(passage.id)} has {len(completions)} self-edits, --k asks for {config.k}."
            )
    return partial(_external_of, by_context)  # a partial, not a lambda: worker processes get it pickled


def _external_of(by_context: dict, passage) -> list:
    """The external self-edits of ``passage`` (found by its text)."""
    return by_context[passage.context.strip()]


def write_outputs(run: RunDir, passages, records: list[dict], bootstrap_samples: int) -> None:
    """Derive the per-answer files, official SQuAD predictions and the results table from the records."""
    run.write_jsonl(
        "answers.jsonl",
        (
            {"unit": r["unit"], "condition": r["condition"], "sample": r["sample"], **g}
            for r in records
            for g in r["grades"]
        ),
    )
    run.write_jsonl(
        "self_edits.jsonl",
        ({"unit": r["unit"], "rejected": r["rejected"], **r["self_edit"]} for r in records if r["self_edit"]),
    )
    run.write_jsonl(
        "train_sequences.jsonl",
        ({"unit": r["unit"], "sequences": r["train"]["sequences"]} for r in records if r["train"]),
    )
    run.write_json("squad_gold.json", to_official_squad(list(passages)))
    predictions: dict[str, dict[str, str]] = {}
    for r in records:
        name = (
            f"{r['condition']}-{r['sample']}"
            if KnowledgeDomain.conditions[r["condition"]] in SAMPLED_KINDS
            else r["condition"]
        )
        predictions.setdefault(name, {}).update({g["question_id"]: g["answer"] for g in r["grades"]})
    for name, answers in predictions.items():
        run.write_json(f"predictions/{name}.json", answers)
    summary = results_table(KnowledgeDomain, records, bootstrap_samples)
    run.write_json("results.json", summary)
    run.write_text("results.md", markdown_table(summary))
    print(f"\n{markdown_table(summary)}\nWritten to {run.path}\n{see_it(run.path)}")
