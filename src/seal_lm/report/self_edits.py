"""How self-edits are measured, to see them change across ReST-EM rounds (``seal report`` and the benchmarks).

Each measure takes a group of self-edits, each as ``(text, prompt)`` (the prompt it was written
from, which holds the passage), and gives their mean, or None for an empty group.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from statistics import fmean

COPIED_NGRAM = 5  # a phrase of this many words found in the prompt counts as copied

SelfEdit = tuple[str, str]  # (text, the prompt it was written from)


def copied_share(text: str, source: str, n: int = COPIED_NGRAM) -> float:
    """The share of ``text``'s word n-grams that also occur in ``source`` (1.0: every phrase copied; 0.0 under n words)."""
    own, available = _ngrams(text, n), set(_ngrams(source, n))
    return sum(gram in available for gram in own) / len(own) if own else 0.0


def mean_copied_share(self_edits: Iterable[SelfEdit]) -> float | None:
    """The mean :func:`copied_share` of the self-edits that wrote anything, each against its prompt."""
    shares = [copied_share(text, prompt) for text, prompt in self_edits if text.strip()]
    return fmean(shares) if shares else None


def mean_words(self_edits: Sequence[SelfEdit]) -> float | None:
    return fmean(len(text.split()) for text, _ in self_edits) if self_edits else None


def mean_lines(self_edits: Sequence[SelfEdit]) -> float | None:
    """The mean number of non-blank lines."""
    return fmean(sum(1 for line in text.splitlines() if line.strip()) for text, _ in self_edits) if self_edits else None


# name → (its chart's title, the measure), in the order they are shown
MEASURES: dict[str, tuple[str, Callable[[Sequence[SelfEdit]], float | None]]] = {
    "words": ("words per self-edit (mean)", mean_words),
    "lines": ("non-blank lines per self-edit (mean)", mean_lines),
    "copied": (f"share of {COPIED_NGRAM}-grams copied (mean)", mean_copied_share),
}
SHARES = ("copied",)  # the measures that are shares (0..1)


def _ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
