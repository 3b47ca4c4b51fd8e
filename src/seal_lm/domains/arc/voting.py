"""Majority vote over the predictions made on several views of one test input."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from seal_lm.domains.arc.grids import Grid


def vote(predictions: Sequence[Grid | None], attempts: int = 2) -> list[Grid]:
    """The ``attempts`` most frequent grids, most votes first; a tie goes to the grid predicted first.

    None (an answer that was not a grid) casts no vote, so fewer grids may come back.
    """
    counts = Counter(p for p in predictions if p is not None)  # keys in order of first appearance
    return sorted(counts, key=lambda grid: -counts[grid])[:attempts]  # sorted() is stable
