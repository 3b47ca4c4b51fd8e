"""seal-lm: language models that write their own fine-tuning data and learn from it (SEAL).

The public API, layer by layer (see the README's architecture section)::

    from seal_lm import load_model, load_passages, KnowledgeDomain, PromptFormatter, InnerLoop
"""

from __future__ import annotations

import importlib

from seal_lm.threads import wait_passively

wait_passively()  # before anything imports torch: idle OpenMP threads sleep after a short spin (see seal_lm.threads)

INTERRUPTED = 130  # the exit status of a command ended by Ctrl-C (128 + SIGINT), as shells report it

# Each public name and its module. Names are imported on first use, so ``import seal_lm`` is instant:
# the ``seal`` command starts (and answers Ctrl-C) before torch and transformers have loaded.
_HOMES = {
    "CandidateResult": "seal_lm.adapt.lora",
    "InnerLoop": "seal_lm.adapt.lora",
    "InnerLoopSettings": "seal_lm.adapt.lora",
    "TrainExample": "seal_lm.adapt.lora",
    "TrainPlan": "seal_lm.adapt.lora",
    "Domain": "seal_lm.domains.base",
    "SelfEditRejected": "seal_lm.domains.base",
    "Passage": "seal_lm.domains.knowledge.data",
    "Question": "seal_lm.domains.knowledge.data",
    "load_passages": "seal_lm.domains.knowledge.data",
    "KnowledgeDomain": "seal_lm.domains.knowledge.domain",
    "KnowledgeSettings": "seal_lm.domains.knowledge.domain",
    "LLMJudge": "seal_lm.domains.knowledge.grading",
    "grade_answer": "seal_lm.domains.knowledge.grading",
    "Generation": "seal_lm.model.generation",
    "GenerationSettings": "seal_lm.model.generation",
    "generate": "seal_lm.model.generation",
    "DEFAULT_MODEL": "seal_lm.model.loading",
    "LoadedModel": "seal_lm.model.loading",
    "load_model": "seal_lm.model.loading",
    "PromptFormatter": "seal_lm.model.prompting",
    "PromptTemplate": "seal_lm.model.prompting",
    "RunDir": "seal_lm.runs.rundir",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'seal_lm' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
