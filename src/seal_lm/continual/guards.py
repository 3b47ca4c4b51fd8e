"""Guards on continual updates: faithfulness of self-edit lines, the retention decision, a replay buffer.

- :func:`check_faithfulness` keeps the self-edit lines whose names and numbers appear in the source
  document, and drops the others with the reason (a cheap check against self-generated errors).
- :func:`decide_update` accepts, rejects or asks to retry an update from its scores on the new
  document's probes and on a retention set, by a :class:`RetentionPolicy`;
  :func:`retention_aware_reward` is the matching reward for the outer loop.
- :class:`ReplayBuffer` keeps a bounded, seeded sample of earlier documents (their probes form the
  retention set; their training texts can be mixed into a retried update). The continual learner
  rebuilds it from the ledger's accepted updates, so it is never saved on its own.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from seal_lm.choices import check_choice
from seal_lm.continual.ledger import ACCEPTED, REJECTED, RETRY_WITH_REPLAY
from seal_lm.domains.knowledge.data import Passage, Question

# ---------------------------------------------------------------------------------------------
# Faithfulness
# ---------------------------------------------------------------------------------------------

WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# Capitalised words that are not names: function words that start sentences, and self-edit scaffolding.
NOT_NAMES = frozenset(
    """a about after all also although an and another answer any are as at be because been before both but by
    can could did do does during each either every fact facts for from had has have he her here his how however
    i if implication implications in into is it its many might more moreover most must my neither no nor
    not note one or other our over question she should since so some such than that the their then there
    therefore these they this those though thus to topic under until was we were what when where which while
    who whom whose why will with without would yes yet you your""".split()
)


@dataclass(frozen=True)
class DroppedLine:
    line: str
    reason: str


@dataclass(frozen=True)
class FaithfulnessCheck:
    """The self-edit lines the document supports (``kept``) and the others, each with its reason."""

    kept: tuple[str, ...]
    dropped: tuple[DroppedLine, ...]


def check_faithfulness(lines: Iterable[str], document: str, title: str = "") -> FaithfulnessCheck:
    """Keep the lines whose every name and number appears in ``document`` (or its ``title``).

    The rule: a line's *anchors* are its numbers (digit runs such as ``1889``, ``3.5``, ``1,200``;
    thousands commas ignored) and its capitalised words (possessive ``'s`` removed), except common
    function words (``The``, ``It``, ``However`` ...) and self-edit scaffolding (``Question``,
    ``Answer``, ``Implication``). A line is kept if every anchor occurs in the document as a whole
    word or number, ignoring case. Dates are covered by their parts (``May 4, 1889``: ``May``,
    ``4``, ``1889``). Number words (``three``) and lowercase words are not checked. Blank lines are
    ignored.
    """
    source = f"{title}\n{document}"
    known_words = {_word_key(w) for w in WORD.findall(source)}
    known_numbers = {_number_key(n) for n in NUMBER.findall(source)}
    kept, dropped = [], []
    for line in lines:
        if not line.strip():
            continue
        missing = [n for n in NUMBER.findall(line) if _number_key(n) not in known_numbers]
        missing += [w for w in WORD.findall(line) if _is_name(w) and _word_key(w) not in known_words]
        if missing:
            shown = ", ".join(repr(m) for m in dict.fromkeys(missing))
            dropped.append(DroppedLine(line, f"not in the document: {shown}"))
        else:
            kept.append(line)
    return FaithfulnessCheck(tuple(kept), tuple(dropped))


def _is_name(word: str) -> bool:
    return word[0].isupper() and _word_key(word) not in NOT_NAMES


def _word_key(word: str) -> str:
    return re.sub(r"['’]s$", "", word).lower()


def _number_key(number: str) -> str:
    return number.replace(",", "")


# ---------------------------------------------------------------------------------------------
# The retention decision
# ---------------------------------------------------------------------------------------------

ACTIONS = ("reject", "retry-with-replay", "accept")


@dataclass(frozen=True)
class RetentionPolicy:
    """When an update may be committed. Scores are per probe in [0, 1]; differences are of their means."""

    tolerance: float = 0.0  # the largest drop in mean retention score an update may cause
    action: str = (
        "reject"  # beyond the tolerance: "reject", "retry-with-replay" (once, then reject), or "accept" (naive)
    )
    # If set, the least gain on the new document's probes; below it the update is rejected. Unset by
    # default: a few probes of a small model often score the same before and after an update that did
    # teach something (wording, a fact the probes miss), and the retention guard already protects
    # earlier documents; an update kept without a measured gain says so in its reason.
    min_gain: float | None = None

    def __post_init__(self):
        check_choice(self.action, ACTIONS, "retention action")
        if not self.tolerance >= 0:
            raise ValueError(f"tolerance must be zero or positive, got {self.tolerance}.")


@dataclass(frozen=True)
class UpdateDecision:
    """``verdict`` is a ledger decision: ``accepted``, ``rejected`` or ``retry-with-replay``."""

    verdict: str
    reason: str
    gain: float | None  # mean score on the new document's probes, after minus before (None: no probes)
    retention_drop: float | None  # mean retention score, before minus after (None: no retention probes)


def decide_update(
    new_before: Sequence[float],
    new_after: Sequence[float],
    retention_before: Sequence[float],
    retention_after: Sequence[float],
    policy: RetentionPolicy,
    *,
    retried: bool = False,
) -> UpdateDecision:
    """Decide one update from per-probe scores before and after it. ``retried``: this is the replay retry."""
    gain = _mean_change(new_before, new_after, "new-document")
    drop = _retention_drop(retention_before, retention_after)
    if policy.min_gain is not None:
        if gain is None:
            return UpdateDecision(REJECTED, "no probes on the new document to check the gain", gain, drop)
        if gain < policy.min_gain:
            return UpdateDecision(
                REJECTED, f"gain {gain:+.3f} on the new document is below min_gain {policy.min_gain:.3f}", gain, drop
            )
    untaught = _untaught(gain) if policy.min_gain is None else ""
    if drop is None:
        return UpdateDecision(ACCEPTED, f"{untaught}no retention probes yet", gain, drop)
    if drop <= policy.tolerance + 1e-9:
        return UpdateDecision(
            ACCEPTED, f"{untaught}retention drop {drop:+.3f} within tolerance {policy.tolerance:.3f}", gain, drop
        )
    beyond = f"retention dropped {drop:.3f}, more than tolerance {policy.tolerance:.3f}"
    if policy.action == "accept":
        return UpdateDecision(ACCEPTED, f"{untaught}{beyond}; accepted by policy", gain, drop)
    if policy.action == "retry-with-replay" and not retried:
        return UpdateDecision(RETRY_WITH_REPLAY, f"{beyond}; retrying with replay", gain, drop)
    return UpdateDecision(REJECTED, f"{beyond}{' even with replay' if retried else ''}", gain, drop)


def _untaught(gain: float | None) -> str:
    """The start of an accepted update's reason when its probes measured no gain (no min_gain asked for one)."""
    if gain is None or gain > 1e-9:
        return ""
    measured = (
        "no measurable gain on the new document"
        if gain > -1e-9
        else f"the new document's probes got worse ({gain:+.3f})"
    )
    return f"{measured}, kept as no min_gain is set; "


def retention_aware_reward(
    new_before: Sequence[float],
    new_after: Sequence[float],
    retention_before: Sequence[float],
    retention_after: Sequence[float],
    weight: float,
) -> float:
    """Gain on the new document minus ``weight`` times the retention loss (a retention gain is not rewarded)."""
    gain = _mean_change(new_before, new_after, "new-document")
    if gain is None:
        raise ValueError("the reward needs at least one new-document probe score.")
    drop = _retention_drop(retention_before, retention_after) or 0.0
    return gain - weight * max(0.0, drop)


def _mean_change(before: Sequence[float], after: Sequence[float], what: str) -> float | None:
    """mean(after) - mean(before), or None without scores."""
    if len(before) != len(after):
        raise ValueError(f"{what} scores: {len(before)} before but {len(after)} after; score the same probes twice.")
    if not before:
        return None
    return sum(after) / len(after) - sum(before) / len(before)


def _retention_drop(before: Sequence[float], after: Sequence[float]) -> float | None:
    change = _mean_change(before, after, "retention")
    return None if change is None else 0.0 - change


# ---------------------------------------------------------------------------------------------
# The replay buffer
# ---------------------------------------------------------------------------------------------

STRATEGIES = ("reservoir", "fifo")


@dataclass(frozen=True)
class ReplayEntry:
    """An earlier document: its probes (for the retention set) and texts to replay in training."""

    document_id: str
    title: str
    probes: tuple[Question, ...]
    train_texts: tuple[str, ...] = ()  # e.g. the document and its kept self-edit lines

    def as_passage(self) -> Passage:
        """The entry as a knowledge-domain passage (no context: probes are asked closed-book)."""
        return Passage(self.document_id, self.title, "", self.probes)


class ReplayBuffer:
    """At most ``capacity`` earlier documents.

    ``reservoir`` keeps a uniform sample of every document added so far (seeded); ``fifo`` keeps the
    most recent ones.
    """

    def __init__(self, capacity: int, strategy: str = "reservoir", seed: int = 0):
        if capacity < 1:
            raise ValueError(f"replay buffer capacity must be at least 1, got {capacity}.")
        check_choice(strategy, STRATEGIES, "replay strategy")
        self.capacity, self.strategy, self.seed = capacity, strategy, seed
        self.added = 0  # documents offered so far, kept or not
        self._entries: list[ReplayEntry] = []
        self._rng = random.Random(seed)

    @property
    def entries(self) -> tuple[ReplayEntry, ...]:
        return tuple(self._entries)

    def add(self, entry: ReplayEntry) -> None:
        """Offer one document; it is kept, or replaces a kept one, as the strategy says."""
        self.added += 1
        if len(self._entries) < self.capacity:
            self._entries.append(entry)
        elif self.strategy == "fifo":
            self._entries = [*self._entries[1:], entry]
        else:
            slot = self._rng.randrange(self.added)
            if slot < self.capacity:
                self._entries[slot] = entry
