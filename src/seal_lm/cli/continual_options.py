"""Settings shared by ``seal adapt`` and ``seal eval continual``: probes, the retention guard, replay, commits."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from seal_lm.cli.options import option
from seal_lm.cli.shared_options import KnowledgeOptions
from seal_lm.continual.guards import ACTIONS, STRATEGIES, RetentionPolicy
from seal_lm.continual.ledger import Ledger
from seal_lm.continual.versions import COMMIT_MODES
from seal_lm.domains.knowledge.domain import KnowledgeDomain
from seal_lm.loops.continual import PROBE_SOURCES, ContinualLearner, ContinualSettings
from seal_lm.model.generation import GenerationSettings
from seal_lm.model.prompting import PromptFormatter


@dataclass
class ContinualOptions(KnowledgeOptions):
    # Each update is merged before the next is trained: one sequential inner loop, in this process,
    # generating with transformers (vLLM would serve a stale copy of the weights).
    without_flags: ClassVar[tuple[str, ...]] = (
        "engine",
        "generator",
        "vllm_gpu_memory",
        "executor",
        "ray_address",
        "workers",
    )

    commit: str = option(
        "merge",
        "What each model version stores: merge stores the adapted layers' merged weights, stack only its own adapter (the model is the base plus its ancestors' adapters).",
        COMMIT_MODES,
    )
    k: int = option(
        1, "Self-edits per document; each trains a candidate, the best by retention-aware reward is the update."
    )
    retention_weight: float = option(
        1.0, "Candidate reward = gain on the document's probes minus this times the retention drop."
    )
    on_forgetting: str = option(
        "reject",
        "When retention drops more than --retention-tolerance (retry-with-replay: once, with replay mixed into training, then reject).",
        ACTIONS,
    )
    retention_tolerance: float = option(
        0.1, "Largest drop in mean retention score an update may cause (scores are 0 to 1)."
    )
    min_gain: float = option(
        -1.0,
        "Least gain on the document's own probes for an update to be kept (-1, the default: no minimum; an update kept without a measured gain says so). 0.01 keeps only updates that measurably taught something.",
    )
    probes: str = option(
        "auto",
        "A document's probes: auto takes its gold questions if it has any, else questions written by the model, filled up with cloze (fill-in-the-blank sentences of the document).",
        PROBE_SOURCES,
    )
    probe_count: int = option(5, "Probe questions the model writes per document.")
    probe_max_tokens: int = option(256, "Token budget for writing a document's probes.")
    drop_unfaithful: bool = option(
        False, "Drop self-edit lines whose names or numbers the document does not contain (counted in the ledger)."
    )
    replay_capacity: int = option(
        16, "Earlier documents kept in the replay buffer (their probes are the retention set)."
    )
    replay_strategy: str = option("reservoir", "Which earlier documents the buffer keeps.", STRATEGIES)
    replay_mix: int = option(4, "Earlier documents whose training sequences a retried update also trains on.")

    def continual_settings(self, verify: bool = True) -> ContinualSettings:
        """The learner's settings (checked, so a typo fails before any work)."""
        self.check()
        if not 0 <= self.retention_tolerance <= 1 or self.replay_capacity < 1:
            raise ValueError("--retention-tolerance must be between 0 and 1, and --replay-capacity at least 1.")
        policy = RetentionPolicy(
            self.retention_tolerance, self.on_forgetting, None if self.min_gain <= -1 else self.min_gain
        )
        return ContinualSettings(
            commit=self.commit,
            k=self.k,
            retention_weight=self.retention_weight,
            policy=policy,
            verify=verify,
            probe_source=self.probes,
            probe_count=self.probe_count,
            probe_generation=GenerationSettings(max_new_tokens=self.probe_max_tokens, seed=self.seed),
            self_edit_generation=self.self_edit_generation(),
            drop_unfaithful=self.drop_unfaithful,
            replay_capacity=self.replay_capacity,
            replay_strategy=self.replay_strategy,
            replay_mix=self.replay_mix,
            seed=self.seed,
        )

    def open_learner(self, ledger: Ledger, settings: ContinualSettings) -> ContinualLearner:
        """Load the model afresh and continue from ``ledger``'s current version."""
        loaded = self.load()
        domain = KnowledgeDomain(PromptFormatter(loaded.tokenizer, loaded.chat), self.knowledge_settings())
        return ContinualLearner.open(
            ledger, self.inner_loop(loaded.model, loaded.tokenizer, self.model), domain, settings, self.model
        )


def naive(settings: ContinualSettings) -> ContinualSettings:
    """The paper's sequential updates: every update merged, nothing verified, no faithfulness filter."""
    return replace(settings, verify=False, k=1, policy=RetentionPolicy(action="accept"), drop_unfaithful=False)
