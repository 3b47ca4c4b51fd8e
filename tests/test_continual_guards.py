"""Tests for seal_lm.continual.guards: the faithfulness check on hand-made lines, retention decisions on
hand-made scores for each policy action, and the replay buffer's bounds, sampling and round trip."""

from __future__ import annotations

import pytest

from seal_lm.continual.guards import (
    DroppedLine,
    ReplayBuffer,
    ReplayEntry,
    RetentionPolicy,
    check_faithfulness,
    decide_update,
    retention_aware_reward,
)
from seal_lm.domains.knowledge.data import Question

DOCUMENT = (
    "The Eiffel Tower was completed on 31 March 1889 in Paris. Gustave Eiffel's company, which employed "
    "1,200 workers, built it. It is 330 metres tall."
)

# ---------------------------------------------------------------------------------------------
# Faithfulness
# ---------------------------------------------------------------------------------------------


def test_lines_with_names_or_numbers_missing_from_the_document_are_dropped_with_the_reason():
    lines = [
        "The Eiffel Tower was finished in 1890.",  # wrong year
        "Paris is home to the tower, completed in March 1889.",
        "Gustave Eiffel's firm had 1200 workers.",  # 1,200 written without the comma: the same number
        "It was designed in Berlin by Otto.",  # invented names
        "However, it is 330.5 metres tall.",
        "",
        "The tower is made of iron.",  # nothing checkable: kept (lowercase words are not checked)
        "Question: How tall is it? Answer: 330 metres.",  # scaffolding words are not names
    ]

    check = check_faithfulness(lines, DOCUMENT)

    assert check.kept == (lines[1], lines[2], lines[6], lines[7])
    assert check.dropped == (
        DroppedLine(lines[0], "not in the document: '1890'"),
        DroppedLine(lines[3], "not in the document: 'Berlin', 'Otto'"),
        DroppedLine(lines[4], "not in the document: '330.5'"),
    )


def test_the_title_counts_as_part_of_the_document():
    line = "Topic: Landmarks. The Eiffel Tower is 330 metres tall."
    assert check_faithfulness([line], DOCUMENT).dropped[0].reason == "not in the document: 'Landmarks'"
    assert check_faithfulness([line], DOCUMENT, title="Landmarks").kept == (line,)


# ---------------------------------------------------------------------------------------------
# Retention decisions
# ---------------------------------------------------------------------------------------------

NEW_BEFORE, NEW_AFTER = [0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]  # gain 0.5
RETENTION_BEFORE = [1.0, 1.0, 1.0, 1.0, 0.0]  # mean 0.8
SMALL_DROP = [1.0, 1.0, 1.0, 0.0, 0.0]  # mean 0.6: drop 0.2
LARGE_DROP = [1.0, 0.0, 0.0, 0.0, 0.0]  # mean 0.2: drop 0.6


def decide(retention_after, policy, **kwargs):
    return decide_update(NEW_BEFORE, NEW_AFTER, RETENTION_BEFORE, retention_after, policy, **kwargs)


@pytest.mark.parametrize("action", ["reject", "retry-with-replay", "accept"])
def test_a_drop_within_tolerance_is_accepted_by_every_action(action):
    decision = decide(SMALL_DROP, RetentionPolicy(tolerance=0.25, action=action))
    assert decision.verdict == "accepted"
    assert decision.gain == pytest.approx(0.5) and decision.retention_drop == pytest.approx(0.2)
    assert decision.reason == "retention drop +0.200 within tolerance 0.250"


def test_beyond_tolerance_reject_rejects():
    decision = decide(LARGE_DROP, RetentionPolicy(tolerance=0.25, action="reject"))
    assert (decision.verdict, decision.reason) == ("rejected", "retention dropped 0.600, more than tolerance 0.250")


def test_beyond_tolerance_retry_with_replay_retries_once_then_decides():
    policy = RetentionPolicy(tolerance=0.25, action="retry-with-replay")
    assert decide(LARGE_DROP, policy).verdict == "retry-with-replay"
    assert decide(SMALL_DROP, policy, retried=True).verdict == "accepted"  # replay fixed it
    still = decide(LARGE_DROP, policy, retried=True)
    assert (still.verdict, still.reason) == (
        "rejected",
        "retention dropped 0.600, more than tolerance 0.250 even with replay",
    )


def test_beyond_tolerance_accept_accepts_and_says_so():
    decision = decide(LARGE_DROP, RetentionPolicy(tolerance=0.25, action="accept"))
    assert (decision.verdict, decision.reason) == (
        "accepted",
        "retention dropped 0.600, more than tolerance 0.250; accepted by policy",
    )


def test_a_retention_gain_and_the_first_document_are_accepted_even_at_zero_tolerance():
    assert decide([1.0] * 5, RetentionPolicy()).verdict == "accepted"
    first = decide_update(NEW_BEFORE, NEW_AFTER, [], [], RetentionPolicy())
    assert (first.verdict, first.reason, first.retention_drop) == ("accepted", "no retention probes yet", None)


def test_min_gain_rejects_an_update_that_did_not_learn_the_document():
    policy = RetentionPolicy(action="accept", min_gain=0.6)
    decision = decide(RETENTION_BEFORE, policy)
    assert (decision.verdict, decision.reason) == (
        "rejected",
        "gain +0.500 on the new document is below min_gain 0.600",
    )
    assert decide_update([], [], [], [], policy).reason == "no probes on the new document to check the gain"


@pytest.mark.parametrize(
    "after, said",
    [
        ([0.0, 0.0, 1.0, 0.0], "no measurable gain on the new document"),
        ([0.0, 1.0, 0.0, 0.0], "no measurable gain on the new document"),
        ([0.0, 0.0, 0.0, 0.0], "the new document's probes got worse (-0.250)"),
    ],
)
def test_an_update_kept_without_a_measured_gain_says_so(after, said):
    """No min_gain (the default): the update is kept, and its reason starts by saying it taught nothing measurable."""
    for retention_after, rest in [
        (SMALL_DROP, "retention drop +0.200 within tolerance 0.250"),
        (None, "no retention probes yet"),
    ]:
        retention_before = RETENTION_BEFORE if retention_after else []
        decision = decide_update(
            NEW_BEFORE, after, retention_before, retention_after or [], RetentionPolicy(tolerance=0.25)
        )
        assert (decision.verdict, decision.reason) == ("accepted", f"{said}, kept as no min_gain is set; {rest}")


def test_scores_and_policies_are_validated():
    with pytest.raises(ValueError, match="retention scores: 5 before but 4 after"):
        decide(LARGE_DROP[:4], RetentionPolicy())
    with pytest.raises(
        ValueError, match="Unknown retention action 'ignore'. Available: reject, retry-with-replay, accept"
    ):
        RetentionPolicy(action="ignore")
    with pytest.raises(ValueError, match="tolerance must be zero or positive"):
        RetentionPolicy(tolerance=-0.1)


def test_retention_aware_reward_is_gain_minus_weighted_loss():
    assert retention_aware_reward(NEW_BEFORE, NEW_AFTER, RETENTION_BEFORE, LARGE_DROP, weight=0.5) == pytest.approx(
        0.5 - 0.5 * 0.6
    )
    assert retention_aware_reward(NEW_BEFORE, NEW_AFTER, LARGE_DROP, RETENTION_BEFORE, weight=0.5) == pytest.approx(
        0.5
    )  # no bonus
    assert retention_aware_reward(NEW_BEFORE, NEW_AFTER, [], [], weight=2.0) == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------
# Replay buffer
# ---------------------------------------------------------------------------------------------


def entry(k: int) -> ReplayEntry:
    question = Question(f"d{k}-q0", f"What is fact {k}?", (f"answer {k}", f"{k}"))
    return ReplayEntry(f"d{k}", f"Title {k}", (question,), (f"Document {k}.", f"Self-edit line {k}."))


def test_fifo_keeps_the_most_recent_documents():
    buffer = ReplayBuffer(capacity=3, strategy="fifo")
    for k in range(7):
        buffer.add(entry(k))
    assert [e.document_id for e in buffer.entries] == ["d4", "d5", "d6"] and buffer.added == 7


def test_reservoir_is_bounded_seeded_and_samples_the_whole_history():
    def kept(seed: int) -> list[str]:
        buffer = ReplayBuffer(capacity=5, strategy="reservoir", seed=seed)
        for k in range(20):
            buffer.add(entry(k))
        return [e.document_id for e in buffer.entries]

    assert len(kept(0)) == 5 and kept(0) == kept(0)
    # each of 20 documents is kept with probability 5/20, the first as often as the last
    runs = [kept(seed) for seed in range(400)]
    for document in ("d0", "d19"):
        assert 0.18 < sum(document in run for run in runs) / len(runs) < 0.32


def test_an_unknown_replay_strategy_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown replay strategy 'lifo'"):
        ReplayBuffer(capacity=2, strategy="lifo")
