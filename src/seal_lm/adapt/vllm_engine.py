"""The inner loop with vLLM as its generator (``--generator vllm``, GPU).

Training stays with the PEFT engine (:class:`~seal_lm.adapt.lora.InnerLoop`); writing self-edits
and answering probes go through a vLLM engine serving the same base model from disk. Each trained
candidate's adapter is saved in PEFT's format and attached to its own requests (vLLM's multi-LoRA
batching), so all candidates of a context are answered in one ``generate`` call.

vLLM keeps its own copy of the weights, so this engine is only for a base model that does not change
while the engine lives (``seal eval`` and the E-step of ``seal train``, which builds fresh workers
on each round's policy), not for ``seal adapt``, which merges every update into the weights.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from seal_lm.adapt.lora import ADAPTER_NAME, NO_ANSWER, CandidateResult, InnerLoop, TrainPlan
from seal_lm.model.generation import Generation, GenerationSettings

VLLM_MISSING = "--generator vllm needs vLLM on a CUDA machine: pip install 'seal-lm[vllm]' (or use --generator hf)"


class VLLMInnerLoop:
    """Same interface as :class:`~seal_lm.adapt.lora.InnerLoop`; generation runs in vLLM, adapters attached per request."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        model_path: str,
        max_lora_rank: int,
        gpu_memory: float = 0.45,
        compute_dtype: torch.dtype | None = None,
    ):
        try:
            from vllm import LLM
        except ImportError:
            raise ValueError(VLLM_MISSING) from None
        self.trainer = InnerLoop(model, tokenizer, compute_dtype=compute_dtype)
        self.llm = LLM(
            model=model_path,
            dtype=str(next(model.parameters()).dtype).removeprefix("torch."),  # serve what is trained
            enable_lora=True,
            max_lora_rank=supported_lora_rank(max_lora_rank),
            max_loras=8,
            gpu_memory_utilization=gpu_memory,
            enable_prefix_caching=True,  # the k self-edit requests of a context share their prompt: prefilled once
        )
        self.adapter_dir = Path(tempfile.mkdtemp(prefix="seal-vllm-adapters-"))
        self.adapters_served = 0  # vLLM caches adapters by id: every adapter gets a new one

    def generate_with_base(self, prompts: Sequence[str], generation: GenerationSettings) -> list[Generation]:
        """Completions from the base model (no adapter)."""
        return self._generate(list(prompts), generation, [None] * len(prompts))

    def train_and_answer(
        self, plans: Sequence[TrainPlan], prompts: Sequence[str], generation: GenerationSettings
    ) -> list[CandidateResult]:
        """Train each plan's adapter with PEFT, save it, then answer every (adapter, prompt) pair in one vLLM call."""
        from vllm.lora.request import LoRARequest

        trained = []
        for plan in plans:
            stats = self.trainer.train_adapter(plan)
            state = self.trainer.adapter_state()
            self.adapters_served += 1
            folder = self.adapter_dir / str(self.adapters_served)
            self.trainer.peft_model.save_pretrained(
                folder, selected_adapters=[ADAPTER_NAME]
            )  # PEFT writes it to folder/<adapter name>
            request = LoRARequest(f"candidate-{self.adapters_served}", self.adapters_served, str(folder / ADAPTER_NAME))
            trained.append((stats, state, request))
        live = [request for stats, _, request in trained if not stats.stopped]  # a diverged adapter answers nothing
        rows = [(prompt, request) for request in live for prompt in prompts]
        answers = iter(self._generate([p for p, _ in rows], generation, [r for _, r in rows]))
        for _, _, request in trained:
            shutil.rmtree(Path(request.lora_path).parent, ignore_errors=True)
        return [
            CandidateResult(
                stats=stats,
                answers=[NO_ANSWER if stats.stopped else next(answers) for _ in prompts],
                adapter_state=state,
            )
            for stats, state, _ in trained
        ]

    def train_and_answer_each(
        self, plans: Sequence[TrainPlan], prompts: Sequence[str], generation: GenerationSettings
    ) -> Iterator[CandidateResult]:
        """The results of :meth:`train_and_answer`: every adapter answers in one vLLM call, so they come together."""
        yield from self.train_and_answer(plans, prompts, generation)

    def release(self) -> torch.nn.Module:
        """Shut the vLLM engine down (freeing its GPU memory) and return the plain base model."""
        self.llm = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        shutil.rmtree(self.adapter_dir, ignore_errors=True)
        return self.trainer.release()

    def _generate(self, prompts: list[str], generation: GenerationSettings, adapters: list) -> list[Generation]:
        from vllm import SamplingParams

        # One seed per request: identical prompts (k self-edits of one context) must still differ.
        params = [
            SamplingParams(
                n=1,
                temperature=generation.temperature,
                top_p=generation.top_p,
                max_tokens=generation.max_new_tokens,
                stop=list(generation.stop) or None,
                seed=generation.seed_of(index),
            )
            for index in range(len(prompts))
        ]
        requests = None if all(a is None for a in adapters) else adapters
        outputs = self.llm.generate(prompts, params, lora_request=requests, use_tqdm=False)
        return [
            Generation(
                text=o.outputs[0].text,
                tokens=len(o.outputs[0].token_ids),
                truncated=o.outputs[0].finish_reason == "length",
            )
            for o in outputs
        ]


def supported_lora_rank(rank: int) -> int:
    """The smallest rank vLLM's LoRA kernels are built for (powers of two from 8) that holds ``rank``."""
    supported = 8
    while supported < rank:
        supported *= 2
    return supported
