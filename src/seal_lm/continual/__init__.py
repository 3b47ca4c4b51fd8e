"""Continual self-adaptation from a stream: the model-independent parts.

- :mod:`~seal_lm.continual.ledger`: model versions and every update attempt (SQLite + safetensors), rollback;
- :mod:`~seal_lm.continual.stream`: documents read in order from files, optionally followed as they grow;
- :mod:`~seal_lm.continual.guards`: faithfulness of self-edit lines, the retention decision, the replay buffer;
- :mod:`~seal_lm.continual.probes`: probe questions the model writes about a document, parsed and checked;
- :mod:`~seal_lm.continual.metrics`: average accuracy, backward transfer, forgetting, Spearman correlation.
"""

from seal_lm.continual.guards import (
    FaithfulnessCheck,
    ReplayBuffer,
    ReplayEntry,
    RetentionPolicy,
    UpdateDecision,
    check_faithfulness,
    decide_update,
    retention_aware_reward,
)
from seal_lm.continual.ledger import Ledger, LedgerError, UpdateRecord, Version
from seal_lm.continual.metrics import ContinualSummary, Estimate, spearman, summarize
from seal_lm.continual.probes import WrittenProbes, parse_probes, probe_prompt
from seal_lm.continual.stream import Document, Location, StreamError, read_stream

__all__ = [
    "ContinualSummary",
    "Document",
    "Estimate",
    "FaithfulnessCheck",
    "Ledger",
    "LedgerError",
    "Location",
    "ReplayBuffer",
    "ReplayEntry",
    "RetentionPolicy",
    "StreamError",
    "UpdateDecision",
    "UpdateRecord",
    "Version",
    "WrittenProbes",
    "check_faithfulness",
    "decide_update",
    "parse_probes",
    "probe_prompt",
    "read_stream",
    "retention_aware_reward",
    "spearman",
    "summarize",
]
