"""The inner loop: train a fresh LoRA adapter per training plan, then answer probe prompts with it.

:class:`InnerLoop` wraps a base model once (PEFT LoRA injection) and is then reused for every
candidate: each plan gets a fresh, seeded adapter, a short supervised fine-tune, and greedy answers
to the probe prompts with that adapter active. The base weights are never modified.

The API takes a *batch* of plans for one context (``train_and_answer(plans, prompts)``); the batched
engine (:mod:`seal_lm.adapt.batched`) trains such a batch together behind the same interface.
``train_and_answer_each`` yields the results one by one, as each is ready, for a caller that records
every finished candidate at once (here each adapter is done before the next trains).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
from tqdm.auto import tqdm

from seal_lm.adapt.objectives import INNER_OBJECTIVES, Teacher, combined_loss, distill_weight, distillation_loss
from seal_lm.choices import check_choice
from seal_lm.model.generation import Generation, GenerationSettings, generate

if TYPE_CHECKING:
    from peft import PeftModel

ADAPTER_NAME = "candidate"


@dataclass(frozen=True)
class InnerLoopSettings:
    """LoRA and optimiser settings for one inner-loop fine-tune. Defaults: SEAL's knowledge setting."""

    rank: int = 32
    alpha: int = 64
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 1
    max_grad_norm: float = 1.0
    max_seq_len: int = 2048
    loss_on: str = "all"  # "all" tokens, or "completion" tokens only
    seed: int = 0
    objective: str = "sft"  # one of INNER_OBJECTIVES (seal_lm.adapt.objectives)
    distill_weight: float = 0.5  # w in (1 - w) * sft + w * distill, for objective "sft+distill"

    def __post_init__(self):
        check_choice(self.objective, INNER_OBJECTIVES, "inner-loop objective")
        if not 0 <= self.distill_weight <= 1:
            raise ValueError(f"distill_weight must be between 0 and 1, got {self.distill_weight}")
        if self.loss_on not in ("all", "completion"):
            raise ValueError(f"loss_on must be 'all' or 'completion', got {self.loss_on!r}")
        for name in ("rank", "alpha", "epochs", "batch_size", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


def target_names(model: torch.nn.Module, target_modules: tuple[str, ...]) -> list[str]:
    """Names of the linear layers LoRA adapts (``all-linear``: every one but the output layer)."""
    output_layer = model.get_output_embeddings()
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is output_layer:
            continue
        if target_modules == ("all-linear",) or name.split(".")[-1] in target_modules:
            names.append(name)
    if not names:
        raise ValueError(f"no linear layer of the model matches target modules {', '.join(target_modules)}")
    return names


@dataclass(frozen=True)
class TrainExample:
    """One training sequence: ``prompt`` + ``completion``. With ``loss_on='completion'`` only the completion is learned.

    ``context`` is the document a distillation teacher reads before the sequence (never trained on).
    """

    completion: str
    prompt: str = ""
    context: str = ""


@dataclass(frozen=True)
class TrainPlan:
    """What to fine-tune one candidate adapter on, and how."""

    examples: tuple[TrainExample, ...]
    settings: InnerLoopSettings = field(default_factory=InnerLoopSettings)


@dataclass
class TrainStats:
    steps: int  # optimiser steps taken
    tokens: int  # tokens the loss was computed on, summed over epochs
    sequence_tokens: int  # tokens in the training set (one epoch)
    first_loss: float | None  # the losses of the first and last steps taken (None: no step was)
    last_loss: float | None
    seconds: float
    stopped: str = ""  # why training stopped before its last step (see :func:`divergence`); empty: it ran every step

    @classmethod
    def of(cls, losses: list[float], tokens: int, sequence_tokens: int, seconds: float, stopped: str) -> TrainStats:
        """Statistics of the steps taken, from their (finite) losses."""
        first, last = (losses[0], losses[-1]) if losses else (None, None)
        return cls(len(losses), tokens, sequence_tokens, first, last, seconds, stopped)


NO_ANSWER = Generation(text="", tokens=0, truncated=False)  # what an adapter whose training diverged answers


@dataclass
class CandidateResult:
    """One plan's outcome: training statistics, the adapter weights, and the probe answers."""

    stats: TrainStats
    answers: list[Generation]
    adapter_state: dict[str, torch.Tensor]


class InnerLoopEngine(Protocol):
    """What the loops need from an inner-loop engine (:class:`InnerLoop`, ``BatchedInnerLoop``)."""

    def generate_with_base(self, prompts: Sequence[str], generation: GenerationSettings) -> list[Generation]: ...

    def train_and_answer(
        self, plans: Sequence[TrainPlan], prompts: Sequence[str], generation: GenerationSettings
    ) -> list[CandidateResult]: ...

    def train_and_answer_each(
        self, plans: Sequence[TrainPlan], prompts: Sequence[str], generation: GenerationSettings
    ) -> Iterator[CandidateResult]:
        """The results of ``train_and_answer`` in plan order, each yielded as soon as the engine has it (to record it at once)."""

    def release(self) -> torch.nn.Module: ...


class InnerLoop:
    """Trains and probes fresh LoRA adapters on one frozen base model, one plan at a time."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        progress: bool = False,
        compute_dtype: torch.dtype | None = None,
        compile: bool = False,
    ):
        self.tokenizer = tokenizer
        self.base_model = model
        self.peft_model: PeftModel | None = None
        self.adapter_shape: tuple | None = None  # rank, alpha, dropout and targets of peft_model's candidate adapter
        self.progress = progress  # a progress bar over training steps
        self.compute_dtype = compute_dtype  # autocast forward passes (e.g. bfloat16); weights stay as loaded
        self.compile = compile  # run training steps through torch.compile (see :meth:`_training_forward`)
        self._compiled: torch.nn.Module | None = None

    def generate_with_base(self, prompts: Sequence[str], generation: GenerationSettings) -> list[Generation]:
        """Completions from the untouched base model (no adapter active)."""
        with mixed_precision(self.base_model, self.compute_dtype):
            if self.peft_model is None:
                return generate(self.base_model, self.tokenizer, prompts, generation)
            with self.peft_model.disable_adapter():
                return generate(self.peft_model, self.tokenizer, prompts, generation)

    def train_and_answer(
        self, plans: Sequence[TrainPlan], prompts: Sequence[str], generation: GenerationSettings
    ) -> list[CandidateResult]:
        """For each plan: a fresh adapter, fine-tuned on the plan, then used to answer ``prompts``."""
        return list(self.train_and_answer_each(plans, prompts, generation))

    def train_and_answer_each(
        self, plans: Sequence[TrainPlan], prompts: Sequence[str], generation: GenerationSettings
    ) -> Iterator[CandidateResult]:
        """Each plan's result, yielded as soon as its adapter has answered."""
        for plan in plans:
            stats = self.train_adapter(plan)
            answers = answers_after(stats, self.peft_model, self.tokenizer, prompts, generation, self.compute_dtype)
            yield CandidateResult(stats=stats, answers=answers, adapter_state=self.adapter_state())

    def train_adapter(self, plan: TrainPlan) -> TrainStats:
        """Train a fresh adapter on ``plan``; it stays active until the next call."""
        model = self._fresh_adapter(plan.settings)
        parameters = [p for p in model.parameters() if p.requires_grad]
        torch.manual_seed(
            plan.settings.seed
        )  # LoRA dropout draws here: the adapter never depends on what ran before in this process
        with mixed_precision(model, self.compute_dtype), training_attention(model):
            return train_on_plan(
                model, self.tokenizer, plan, parameters, progress=self.progress, forward=self._training_forward(model)
            )

    def _training_forward(self, model: PeftModel) -> torch.nn.Module:
        """What a training step calls: ``model``, or with ``compile`` its ``torch.compile`` wrapper.

        Compiled once per PEFT model, with dynamic sequence lengths: a fresh adapter's weights are
        inputs of the compiled graph, so a new candidate reuses it (the compiler caches it on disk too).
        """
        if not self.compile:
            return model
        if self._compiled is None or self._compiled._orig_mod is not model:
            self._compiled = torch.compile(model, dynamic=True)
        return self._compiled

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """A copy of the active adapter's weights (what :meth:`load_adapter` takes back)."""
        return {n: p.detach().clone() for n, p in self.peft_model.named_parameters() if ADAPTER_NAME in n}

    def load_adapter(self, state: Mapping[str, torch.Tensor], settings: InnerLoopSettings) -> None:
        """Make ``state`` (a :attr:`CandidateResult.adapter_state`) the active adapter, e.g. to merge it."""
        parameters = dict(self._fresh_adapter(settings).named_parameters())
        adapter = {name for name in parameters if ADAPTER_NAME in name}
        if adapter != set(state):
            raise ValueError(
                f"the adapter state does not fit this model and settings ({len(set(state) - adapter)} unknown, "
                f"{len(adapter - set(state))} missing tensors)"
            )
        with torch.no_grad():
            for name, tensor in state.items():
                if parameters[name].shape != tensor.shape:
                    raise ValueError(
                        f"adapter tensor {name} has shape {tuple(tensor.shape)}, this adapter needs {tuple(parameters[name].shape)}"
                    )
                parameters[name].copy_(tensor)

    def merge_adapter(self) -> torch.nn.Module:
        """Fold the active adapter into the base weights and return the plain model.

        The inner loop then continues from the merged model: its base has changed.
        """
        if self.peft_model is not None:
            self.base_model, self.peft_model = self.peft_model.merge_and_unload(), None
        return self.base_model

    def release(self) -> torch.nn.Module:
        """Remove every adapter and return the untouched base model as a plain module."""
        if self.peft_model is not None:
            self.base_model, self.peft_model = self.peft_model.unload(), None
        return self.base_model

    def _fresh_adapter(self, settings: InnerLoopSettings) -> PeftModel:
        """Make the candidate adapter newly initialised, seeded by ``settings.seed``.

        An adapter of the same shape is re-initialised in place (no new injection, and a compiled
        step stays valid); another shape replaces it.
        """
        from peft import LoraConfig, get_peft_model  # imported on first use: the command line checks its input first
        from peft.tuners.lora import LoraLayer

        config = LoraConfig(
            r=settings.rank,
            lora_alpha=settings.alpha,
            lora_dropout=settings.dropout,
            target_modules="all-linear"
            if settings.target_modules == ("all-linear",)
            else list(settings.target_modules),
            task_type="CAUSAL_LM",
        )
        shape = (settings.rank, settings.alpha, settings.dropout, settings.target_modules)
        if self.peft_model is None:
            self.peft_model = get_peft_model(self.base_model, config, adapter_name=ADAPTER_NAME)
        elif shape != self.adapter_shape:
            self.peft_model.delete_adapter(ADAPTER_NAME)
            self.peft_model.add_adapter(ADAPTER_NAME, config)
            self.peft_model.set_adapter(ADAPTER_NAME)
        self.adapter_shape = shape
        generator = torch.Generator().manual_seed(settings.seed)
        for module in self.peft_model.modules():
            if isinstance(module, LoraLayer) and ADAPTER_NAME in module.lora_A:
                a, b = module.lora_A[ADAPTER_NAME].weight, module.lora_B[ADAPTER_NAME].weight
                with torch.no_grad():
                    a.copy_(initial_lora_a(a.shape, generator))
                    b.zero_()
        return self.peft_model


def answers_after(
    stats: TrainStats,
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    generation: GenerationSettings,
    compute_dtype: torch.dtype | None,
) -> list[Generation]:
    """The answers of a just-trained ``model`` to ``prompts``: none (:data:`NO_ANSWER`) when its training diverged."""
    if stats.stopped:
        return [NO_ANSWER] * len(prompts)
    with mixed_precision(model, compute_dtype):
        return generate(model, tokenizer, prompts, generation)


def mixed_precision(model: torch.nn.Module, dtype: torch.dtype | None):
    """Autocast forward passes to ``dtype`` (weights and optimiser state keep their dtype); a no-op for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(next(model.parameters()).device.type, dtype=dtype)


def initial_lora_a(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """LoRA's A matrix at initialisation (PEFT's default: Kaiming-uniform; B starts at zero).

    Drawn from ``generator`` module by module, so every engine starts a seed's adapter identically.
    """
    return torch.nn.init.kaiming_uniform_(torch.empty(shape), a=math.sqrt(5), generator=generator)


def train_on_plan(
    model: torch.nn.Module,
    tokenizer,
    plan: TrainPlan,
    parameters: list[torch.nn.Parameter],
    progress: bool = False,
    forward: Callable[..., Any] | None = None,
) -> TrainStats:
    """Fine-tune ``parameters`` of ``model`` on the plan's examples (each step calls ``forward``, default ``model``).

    AdamW with a linear decay to zero and gradient clipping: the HF Trainer defaults SEAL used.
    The loss is ``settings.objective``'s (:mod:`seal_lm.adapt.objectives`); distillation needs a
    PEFT ``model`` (its teacher is the model with the adapter disabled).
    A step whose loss is not finite stops training there, before it changes the weights (``stopped`` says so).
    """
    settings = plan.settings
    sequences = [tokenize_example(tokenizer, example, settings) for example in plan.examples]
    if not sequences:
        raise ValueError("a training plan needs at least one example")
    teacher = None
    if settings.objective != "sft":
        contexts = [
            tokenizer(e.context, add_special_tokens=False)["input_ids"] if e.context else [] for e in plan.examples
        ]
        teacher = Teacher(model, contexts, [ids for ids, _ in sequences], model.config.vocab_size)
    weight = distill_weight(settings.objective, settings.distill_weight)
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=0.0)
    steps = step_batches(plan, len(sequences))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / len(steps))
    device = next(model.parameters()).device
    step_model = model if forward is None else forward
    losses, tokens, stopped, start = [], 0, "", time.perf_counter()
    model.train()
    bar = tqdm(total=len(steps), desc="fine-tune", unit="step", disable=not progress, leave=False)
    for number, indices in enumerate(steps, start=1):
        input_ids, labels, attention = collate_batch([sequences[i] for i in indices], tokenizer.pad_token_id, device)
        output = step_model(input_ids=input_ids, attention_mask=attention, labels=labels)
        distill = None
        if teacher is not None:
            targets = teacher.batch(indices, input_ids.shape[1])
            distill = distillation_loss(output.logits[:, :-1], targets, labels[:, 1:] != -100)
        loss = combined_loss(settings.objective, weight, output.loss, distill)
        stopped = divergence(loss.item(), number, len(steps), settings.lr)
        if stopped:
            break
        losses.append(loss.item())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int((labels[:, 1:] != -100).sum())
        bar.update()
    bar.close()
    model.eval()
    return TrainStats.of(losses, tokens, sum(len(ids) for ids, _ in sequences), time.perf_counter() - start, stopped)


def training_attention(model: torch.nn.Module):
    """The attention kernel of training steps: PyTorch's math kernel for half-precision weights on a CPU.

    There the fused (flash) kernel's backward takes 4x the float32 time (2.5 vs 0.66 ms a call at 93
    tokens, BENCHMARKS.md), and the math kernel makes a bf16 step 10% faster; elsewhere torch chooses.
    """
    parameter = next(model.parameters())
    if parameter.device.type == "cpu" and parameter.dtype in (torch.bfloat16, torch.float16):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


def step_batches(plan: TrainPlan, size: int) -> list[list[int]]:
    """The indices of the sequences of every training step: seeded shuffling, epoch by epoch, in batches."""
    shuffler = torch.Generator().manual_seed(plan.settings.seed)
    steps = []
    for _ in range(plan.settings.epochs):
        order = torch.randperm(size, generator=shuffler).tolist()
        steps += [order[i : i + plan.settings.batch_size] for i in range(0, size, plan.settings.batch_size)]
    return steps


def divergence(loss: float, step: int, total_steps: int, lr: float) -> str:
    """Why training stops at ``step`` (counted from 1) when its loss is not finite; empty when it is."""
    if math.isfinite(loss):
        return ""
    return (
        f"training diverged: the loss was {loss} at step {step} of {total_steps} (learning rate {lr:g}), "
        "so the adapter stopped there and answered nothing; a lower learning rate may help"
    )


def tokenize_example(tokenizer, example: TrainExample, settings: InnerLoopSettings) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 where no loss is taken)."""
    prompt_ids = tokenizer(example.prompt, add_special_tokens=False)["input_ids"] if example.prompt else []
    completion_ids = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + completion_ids)[: settings.max_seq_len]
    if settings.loss_on == "completion":
        labels = [-100] * len(prompt_ids) + completion_ids
    else:
        labels = prompt_ids + completion_ids
    labels = labels[: settings.max_seq_len]
    if all(label == -100 for label in labels[1:]):  # the first label is never predicted
        raise ValueError(f"training example has no tokens to learn: {example!r}")
    return ids, labels


def collate_batch(batch: list[tuple[list[int], list[int]]], pad_id: int, device: torch.device):
    """Right-padded input ids, labels (-100 on padding) and attention mask."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in batch], device=device)
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch], device=device)
    attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch], device=device)
    return input_ids, labels, attention
