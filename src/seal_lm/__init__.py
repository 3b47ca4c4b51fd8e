"""seal-lm: language models that write their own fine-tuning data and learn from it (SEAL).

The public API, layer by layer (see the README's architecture section)::

    from seal_lm import load_model, load_passages, KnowledgeDomain, PromptFormatter, InnerLoop
"""

from seal_lm.threads import wait_passively

wait_passively()  # before anything imports torch: idle OpenMP threads sleep after a short spin (see seal_lm.threads)

from seal_lm.adapt.lora import CandidateResult, InnerLoop, InnerLoopSettings, TrainExample, TrainPlan
from seal_lm.domains.base import Domain, SelfEditRejected
from seal_lm.domains.knowledge.data import Passage, Question, load_passages
from seal_lm.domains.knowledge.domain import KnowledgeDomain, KnowledgeSettings
from seal_lm.domains.knowledge.grading import LLMJudge, grade_answer
from seal_lm.model.generation import Generation, GenerationSettings, generate
from seal_lm.model.loading import DEFAULT_MODEL, LoadedModel, load_model
from seal_lm.model.prompting import PromptFormatter, PromptTemplate
from seal_lm.runs.rundir import RunDir

__all__ = [
    "CandidateResult",
    "DEFAULT_MODEL",
    "Domain",
    "Generation",
    "GenerationSettings",
    "InnerLoop",
    "InnerLoopSettings",
    "KnowledgeDomain",
    "KnowledgeSettings",
    "LLMJudge",
    "LoadedModel",
    "Passage",
    "PromptFormatter",
    "PromptTemplate",
    "Question",
    "RunDir",
    "SelfEditRejected",
    "TrainExample",
    "TrainPlan",
    "generate",
    "grade_answer",
    "load_model",
    "load_passages",
]
