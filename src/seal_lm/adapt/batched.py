"""The batched inner loop: K candidate LoRA adapters trained and probed together over one frozen base.

Every targeted ``nn.Linear`` is wrapped by a :class:`StackedLoRALinear` holding K adapters as
stacked tensors. A training step packs the current sequence of every adapter into one padding-free
row (adapter-major: adapter 0's tokens, then adapter 1's, ...; positions restart at each sequence, so
attention stays within it), and each adapter's stretch of tokens goes through its own adapter. K
small fine-tunes then cost about one forward/backward over their real tokens instead of K separate
passes. Generation lays the prompts out adapter-major in equal row blocks instead.

The result is the same as training the candidates one by one with :class:`~seal_lm.adapt.lora.InnerLoop`
(same seeds, same initial adapters, same shuffling, per-adapter loss, gradient clipping, AdamW and
learning-rate schedule), up to floating-point reassociation; a test holds the two engines together.
Training calls the decoder and the output layer separately (:mod:`seal_lm.adapt.packed_ops`):
attention runs within each packed sequence, and the loss is computed only at labelled positions,
chunk by chunk, without keeping vocabulary-sized logits. This assumes a causal LM whose logits are
its bias-free output layer applied to the decoder's last hidden state (true of Llama, Qwen, Mistral,
SmolLM; not of models that soft-cap logits).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch

from seal_lm.adapt.lora import (
    NO_ANSWER,
    CandidateResult,
    InnerLoopSettings,
    TrainPlan,
    TrainStats,
    divergence,
    initial_lora_a,
    mixed_precision,
    step_batches,
    target_names,
    tokenize_example,
    training_attention,
)
from seal_lm.adapt.packed_ops import frozen_head_token_losses, per_sequence_attention, sequence_boundaries
from seal_lm.model.generation import Generation, GenerationSettings, generate

# Settings that must agree for adapters to share one stacked computation.
SHAPE_FIELDS = ("rank", "alpha", "target_modules")


@dataclass
class Routing:
    """Which adapters the tokens of the current batch use, in adapter-major order."""

    active: torch.Tensor | None = None  # adapter ids; None: no adapter (the base model)
    tokens: list[int] | None = None  # tokens per active adapter (packed); None: equal row blocks


class StackedLoRALinear(torch.nn.Module):
    """A frozen linear layer plus K LoRA adapters, row blocks of the batch routed to their adapter."""

    def __init__(self, base: torch.nn.Linear, count: int, rank: int, alpha: int, routing: Routing):
        super().__init__()
        self.base = base
        self.routing = routing
        self.scaling = alpha / rank
        self.lora_a = torch.nn.Parameter(torch.zeros(count, rank, base.in_features, device=base.weight.device))
        self.lora_b = torch.nn.Parameter(torch.zeros(count, base.out_features, rank, device=base.weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.base(x)
        active = self.routing.active
        if active is None:
            return output
        a, b = self.lora_a, self.lora_b  # [k, r, in], [k, out, r]
        if len(active) < len(a):  # gather only when some adapters sit out (it costs a full-size zero fill in backward)
            a, b = a.index_select(0, active), b.index_select(0, active)
        a, b = a.to(x.dtype), b.to(x.dtype)
        tokens = x.reshape(-1, x.shape[-1])
        if self.routing.tokens is None:  # equal blocks: one batched product
            per_adapter = tokens.reshape(len(active), -1, tokens.shape[-1])
            update = torch.bmm(torch.bmm(per_adapter, a.transpose(1, 2)), b.transpose(1, 2))
        else:  # packed stretches of different lengths
            stretches = tokens.split(self.routing.tokens)
            update = torch.cat([part @ a_j.T @ b_j.T for part, a_j, b_j in zip(stretches, a.unbind(), b.unbind())])
        return output + self.scaling * update.reshape(output.shape)


@contextlib.contextmanager
def stacked_adapters(model: torch.nn.Module, count: int, settings: InnerLoopSettings) -> Iterator[tuple[Routing, dict]]:
    """Wrap the targeted layers with ``count`` stacked adapters; restore the plain layers afterwards."""
    routing = Routing()
    layers: dict[str, StackedLoRALinear] = {}
    for name in target_names(model, tuple(settings.target_modules)):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layers[name] = StackedLoRALinear(getattr(parent, child), count, settings.rank, settings.alpha, routing)
        setattr(parent, child, layers[name])
    frozen = [
        p
        for p in model.parameters()
        if p.requires_grad and all(p is not layer.lora_a and p is not layer.lora_b for layer in layers.values())
    ]
    for parameter in frozen:
        parameter.requires_grad_(False)
    try:
        yield routing, layers
    finally:
        for name, layer in layers.items():
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, layer.base)
        for parameter in frozen:
            parameter.requires_grad_(True)


class BatchedInnerLoop:
    """Same interface as :class:`~seal_lm.adapt.lora.InnerLoop`; trains a context's plans together."""

    def __init__(self, model: torch.nn.Module, tokenizer, compute_dtype: torch.dtype | None = None):
        self.base_model = model
        self.tokenizer = tokenizer
        self.compute_dtype = compute_dtype  # autocast forward passes (e.g. bfloat16); weights stay as loaded

    def generate_with_base(self, prompts: Sequence[str], generation: GenerationSettings) -> list[Generation]:
        with mixed_precision(self.base_model, self.compute_dtype):
            return generate(self.base_model, self.tokenizer, prompts, generation)

    def release(self) -> torch.nn.Module:
        """The base model (adapters only exist inside ``train_and_answer``, so it is always plain)."""
        return self.base_model

    def train_and_answer(
        self, plans: Sequence[TrainPlan], prompts: Sequence[str], generation: GenerationSettings
    ) -> list[CandidateResult]:
        """Plans that share LoRA shapes train as one stacked computation; the results keep plan order."""
        for plan in plans:
            check_supported(plan.settings)
        results: list[CandidateResult | None] = [None] * len(plans)
        groups: dict[tuple, list[int]] = {}
        for index, plan in enumerate(plans):
            groups.setdefault(tuple(getattr(plan.settings, f) for f in SHAPE_FIELDS), []).append(index)
        for indices in groups.values():
            group = [plans[i] for i in indices]
            with (
                stacked_adapters(self.base_model, len(group), group[0].settings) as (routing, layers),
                mixed_precision(self.base_model, self.compute_dtype),
            ):
                _initialise(layers, group)
                with per_sequence_attention(self.base_model), training_attention(self.base_model):
                    stats = _train_together(self.base_model, self.tokenizer, group, routing, layers)
                live = [slot for slot, one in enumerate(stats) if not one.stopped]  # a diverged adapter answers nothing
                answers = _answer_together(
                    self.base_model, self.tokenizer, prompts, generation, routing, live, len(group)
                )
                for slot, index in enumerate(indices):
                    state = {
                        f"{name}.{part}": getattr(layer, part)[slot].detach().clone()
                        for name, layer in layers.items()
                        for part in ("lora_a", "lora_b")
                    }
                    results[index] = CandidateResult(stats=stats[slot], answers=answers[slot], adapter_state=state)
        return results

    def train_and_answer_each(
        self, plans: Sequence[TrainPlan], prompts: Sequence[str], generation: GenerationSettings
    ) -> Iterator[CandidateResult]:
        """The results of :meth:`train_and_answer`: the plans train together, so they come together."""
        yield from self.train_and_answer(plans, prompts, generation)


def check_supported(settings: InnerLoopSettings) -> None:
    """Raise ValueError for inner-loop settings this engine cannot train with."""
    if settings.dropout:
        raise ValueError("the batched engine trains without LoRA dropout; use the sequential engine for dropout > 0")
    if settings.objective != "sft":
        raise ValueError(
            f"the batched engine trains with the sft objective only; use --engine sequential for --inner-objective {settings.objective}"
        )


def _initialise(layers: dict[str, StackedLoRALinear], plans: Sequence[TrainPlan]) -> None:
    """Adapter j starts exactly as the sequential engine starts a plan with the same seed."""
    with torch.no_grad():
        for slot, plan in enumerate(plans):
            generator = torch.Generator().manual_seed(plan.settings.seed)
            for layer in layers.values():
                layer.lora_a[slot].copy_(initial_lora_a(layer.lora_a.shape[1:], generator))


def _train_together(model, tokenizer, plans, routing, layers) -> list[TrainStats]:
    start = time.perf_counter()
    device = next(model.parameters()).device
    sequences = [[tokenize_example(tokenizer, example, plan.settings) for example in plan.examples] for plan in plans]
    if any(not s for s in sequences):
        raise ValueError("a training plan needs at least one example")
    schedules = [step_batches(plan, len(s)) for plan, s in zip(plans, sequences)]
    optimizer = _StackedAdamW([p for layer in layers.values() for p in (layer.lora_a, layer.lora_b)], len(plans))
    losses: list[list[float]] = [[] for _ in plans]
    tokens = [0] * len(plans)
    stopped = [""] * len(plans)  # a diverged adapter leaves the packed row (see ``divergence``)
    model.train()
    for step in range(max(len(s) for s in schedules)):
        active = [j for j, schedule in enumerate(schedules) if step < len(schedule) and not stopped[j]]
        if not active:
            break
        input_ids, labels, positions, slots = _pack(
            [[sequences[j][i] for i in schedules[j][step]] for j in active], device
        )
        routing.active = torch.tensor(active, device=device)
        routing.tokens = torch.bincount(slots, minlength=len(active)).tolist()
        # Attention stays within each packed sequence; the output layer runs only where a label is predicted.
        boundaries = sequence_boundaries(positions, model)
        hidden = model.base_model(
            input_ids=input_ids, position_ids=positions, cu_seq_lens_q=boundaries, use_cache=False
        ).last_hidden_state[0, :-1]
        targets = labels[1:]
        labelled = targets != -100
        token_losses = frozen_head_token_losses(hidden[labelled], model.get_output_embeddings(), targets[labelled])
        adapter_of_token = slots[1:][labelled]
        counts = torch.bincount(adapter_of_token, minlength=len(active))
        per_adapter = torch.zeros(len(active), device=device).index_add(0, adapter_of_token, token_losses) / counts
        for j, loss in zip(active, per_adapter.tolist()):
            stopped[j] = divergence(loss, step + 1, len(schedules[j]), plans[j].settings.lr)
            if not stopped[j]:
                losses[j].append(loss)
        finite = [slot for slot, j in enumerate(active) if not stopped[j]]
        stepping = [active[slot] for slot in finite]
        if stepping:
            per_adapter[finite].sum().backward()  # adapters share no parameter: each gets its own gradient
            optimizer.step(
                stepping,
                lrs=[plans[j].settings.lr * (1 - step / len(schedules[j])) for j in stepping],
                max_grad_norms=[plans[j].settings.max_grad_norm for j in stepping],
            )
        for slot, j in zip(finite, stepping):
            tokens[j] += int(counts[slot])
    model.eval()
    routing.active, routing.tokens = None, None
    seconds = (time.perf_counter() - start) / len(plans)  # the shared wall time, split evenly
    return [
        TrainStats.of(losses[j], tokens[j], sum(len(ids) for ids, _ in sequences[j]), seconds, stopped[j])
        for j in range(len(plans))
    ]


def _pack(batches: list[list[tuple[list[int], list[int]]]], device: torch.device):
    """One padding-free row of every adapter's sequences: ids, labels, positions and adapter slot per token.

    A sequence's first label is dropped: alone, nothing predicts it; packed, the previous sequence's
    last token would.
    """
    ids, labels, positions, slots = [], [], [], []
    for slot, batch in enumerate(batches):
        for sequence_ids, sequence_labels in batch:
            ids += sequence_ids
            labels += [-100] + sequence_labels[1:]
            positions += range(len(sequence_ids))
            slots += [slot] * len(sequence_ids)
    return tuple(torch.tensor(values, device=device) for values in ([ids], labels, [positions], slots))


def _answer_together(model, tokenizer, prompts, generation, routing, live, count) -> list[list[Generation]]:
    """Every adapter in ``live`` answers every prompt, one generate call per chunk of prompts; the others answer nothing."""
    answers: list[list[Generation]] = [[] if slot in live else [NO_ANSWER] * len(prompts) for slot in range(count)]
    if not live:
        return answers
    routing.active = torch.tensor(live, device=next(model.parameters()).device)
    try:
        for first in range(0, len(prompts), generation.batch_size):
            chunk = list(prompts[first : first + generation.batch_size])
            rows = [prompt for _ in live for prompt in chunk]  # adapter-major
            outputs = generate(model, tokenizer, rows, replace(generation, batch_size=len(rows)), keep_order=True)
            for block, slot in enumerate(live):
                answers[slot] += outputs[block * len(chunk) : (block + 1) * len(chunk)]
    finally:
        routing.active = None
    return answers


class _StackedAdamW:
    """AdamW (torch's defaults, no weight decay) over stacked adapter tensors, one adapter per slot.

    Each adapter has its own step count, learning rate and gradient clipping; finished adapters are
    left untouched, so each slot follows exactly the trajectory it would follow alone.
    """

    def __init__(self, parameters: list[torch.nn.Parameter], count: int, betas=(0.9, 0.999), eps: float = 1e-8):
        self.parameters = parameters
        self.betas, self.eps = betas, eps
        self.steps = [0] * count
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in parameters]

    @torch.no_grad()
    def step(self, active: list[int], lrs: list[float], max_grad_norms: list[float]) -> None:
        index = torch.tensor(active, device=self.parameters[0].device)
        everyone = len(active) == len(self.steps)  # then update the stacked tensors in place, without gathers

        def rows(tensor: torch.Tensor) -> torch.Tensor:
            return tensor if everyone else tensor.index_select(0, index)

        def write(tensor: torch.Tensor, values: torch.Tensor) -> None:
            if values is not tensor:
                tensor.index_copy_(0, index, values)

        norms = torch.sqrt(sum(rows(p.grad).pow(2).flatten(1).sum(1) for p in self.parameters))
        clip = torch.clamp(torch.tensor(max_grad_norms, device=norms.device) / (norms + 1e-6), max=1.0)
        for j in active:
            self.steps[j] += 1
        beta1, beta2 = self.betas
        steps = torch.tensor([self.steps[j] for j in active], dtype=torch.float64)
        step_sizes = (torch.tensor(lrs, dtype=torch.float64) / (1 - beta1**steps)).to(norms.device)
        bias2 = torch.sqrt(1 - beta2**steps).to(norms.device)
        for parameter, (first, second) in zip(self.parameters, self.moments):
            shape = (-1,) + (1,) * (parameter.dim() - 1)
            grad = rows(parameter.grad).mul_(clip.view(shape).to(parameter.dtype))
            m = rows(first).mul_(beta1).add_(grad, alpha=1 - beta1)
            v = rows(second).mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            write(first, m)
            write(second, v)
            denominator = (v.sqrt() / bias2.view(shape).to(v.dtype)).add_(self.eps)
            target = rows(parameter)
            target.sub_(m / denominator * step_sizes.view(shape).to(m.dtype))
            write(parameter, target)
            parameter.grad = None
