"""Continual-learning summaries of an accuracy matrix, and rank correlation.

``A[i][j]`` is the accuracy on document ``j`` after update step ``i`` (T steps, one document each).
Entries above the diagonal (documents not learned yet) may be None, NaN or missing; the diagonal
and everything below it must be numbers. With ``T`` steps:

- average accuracy: the mean of the last row, ``(1/T) Σ_j A[T-1][j]``;
- backward transfer (Lopez-Paz & Ranzato, 2017): ``(1/(T-1)) Σ_{j<T-1} (A[T-1][j] - A[j][j])``,
  negative when later updates hurt earlier documents;
- forgetting (Chaudhry et al., 2018): for each earlier document, the best accuracy it had after it
  was learned and before the last step, minus its final accuracy, averaged over ``j < T-1``.
  (The max runs over steps ``j..T-2``: accuracy before a document is learned is not counted.)

:func:`summarize` computes all three over several sequences, with standard errors over sequences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Matrix = Sequence[Sequence[float | None]]


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` values, with its standard error (None when ``n`` is 1)."""

    mean: float
    stderr: float | None
    n: int


@dataclass(frozen=True)
class ContinualSummary:
    average_accuracy: Estimate
    backward_transfer: Estimate
    forgetting: Estimate


def average_accuracy(matrix: Matrix) -> float:
    """Mean accuracy over all documents after the last step."""
    rows = _checked(matrix)
    return sum(rows[-1]) / len(rows[-1])


def backward_transfer(matrix: Matrix) -> float:
    """BWT: mean over earlier documents of (final accuracy - accuracy right after learning it)."""
    rows = _checked(matrix, min_steps=2)
    last = len(rows) - 1
    return sum(rows[last][j] - rows[j][j] for j in range(last)) / last


def forgetting(matrix: Matrix) -> float:
    """Mean over earlier documents of (best accuracy after learning it, before the last step - final accuracy)."""
    rows = _checked(matrix, min_steps=2)
    last = len(rows) - 1
    return sum(max(rows[i][j] for i in range(j, last)) - rows[last][j] for j in range(last)) / last


def summarize(matrices: Sequence[Matrix]) -> ContinualSummary:
    """The three summaries averaged over sequences (one matrix each), with standard errors over sequences."""
    if not matrices:
        raise ValueError("summarize needs at least one accuracy matrix.")
    return ContinualSummary(
        estimate([average_accuracy(m) for m in matrices]),
        estimate([backward_transfer(m) for m in matrices]),
        estimate([forgetting(m) for m in matrices]),
    )


def mean_matrix(matrices: Sequence[Matrix]) -> list[list[float | None]]:
    """Element-wise mean of several sequences' matrices (by step and position), None above the diagonal."""
    checked = [_checked(m) for m in matrices]
    if not checked or len({len(rows) for rows in checked}) != 1:
        raise ValueError("mean_matrix needs one or more matrices with the same number of steps.")
    steps = len(checked[0])
    return [
        [sum(rows[i][j] for rows in checked) / len(checked) if j <= i else None for j in range(steps)]
        for i in range(steps)
    ]


def estimate(values: Sequence[float]) -> Estimate:
    """Mean and standard error (sample standard deviation / sqrt(n)) of ``values``."""
    n = len(values)
    if n == 0:
        raise ValueError("estimate needs at least one value.")
    mean = sum(values) / n
    if n == 1:
        return Estimate(mean, None, 1)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return Estimate(mean, math.sqrt(variance / n), n)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (ties get their average rank); NaN when either side is constant."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs two sequences of one length, got {len(x)} and {len(y)}.")
    if len(x) < 2:
        raise ValueError("spearman needs at least two pairs.")
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    covariance = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    spread = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return covariance / spread if spread else math.nan


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; a run of tied values all get the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda k: values[k])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in order[start : end + 1]:
            ranks[k] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _checked(matrix: Matrix, min_steps: int = 1) -> list[list[float]]:
    """The lower triangle (diagonal included) as numbers, or a ValueError naming the bad entry."""
    steps = len(matrix)
    if steps < min_steps:
        raise ValueError(f"this summary needs at least {min_steps} steps, the matrix has {steps}.")
    rows = []
    for i, row in enumerate(matrix):
        if len(row) < i + 1:
            raise ValueError(f"row {i} has {len(row)} entries; it needs accuracies on documents 0..{i}.")
        if len(row) > steps:
            raise ValueError(f"row {i} has {len(row)} entries but there are only {steps} steps.")
        values = row[: i + 1]
        for j, value in enumerate(values):
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"A[{i}][{j}] is {value!r}; entries on and below the diagonal must be numbers.")
        rows.append([float(v) for v in values])
    return rows
