"""Tests for seal_lm.continual.metrics: average accuracy, backward transfer and forgetting on matrices
worked out by hand, standard errors over sequences, and Spearman's rank correlation with ties."""

from __future__ import annotations

import math

import pytest

from seal_lm.continual.metrics import (
    average_accuracy,
    backward_transfer,
    estimate,
    forgetting,
    mean_matrix,
    spearman,
    summarize,
)

NAN = float("nan")

# A[i][j]: accuracy on document j after step i.
# Document 0 peaks at step 1 (0.7), then ends at 0.6; document 1 improves after it was learned.
MATRIX = [
    [0.4, None, None],
    [0.7, 0.5, NAN],
    [0.6, 0.9, 0.8],
]
# By hand:
#   average accuracy = (0.6 + 0.9 + 0.8) / 3                = 0.7667
#   BWT              = ((0.6 - 0.4) + (0.9 - 0.5)) / 2      = 0.3
#   forgetting       = ((max(0.4, 0.7) - 0.6) + (0.5 - 0.9)) / 2 = (0.1 - 0.4) / 2 = -0.15

# The paper's pattern: each document is learned, then slowly forgotten.
FORGETFUL = [
    [0.4],  # rows may stop at the diagonal
    [0.3, 0.5],
    [0.2, 0.4, 0.6],
]
# average 0.4; BWT ((0.2-0.4) + (0.4-0.5)) / 2 = -0.15; forgetting ((0.4-0.2) + (0.5-0.4)) / 2 = 0.15


def test_summaries_of_a_matrix_worked_out_by_hand():
    assert average_accuracy(MATRIX) == pytest.approx(2.3 / 3)
    assert backward_transfer(MATRIX) == pytest.approx(0.3)
    assert forgetting(MATRIX) == pytest.approx(-0.15)


def test_a_forgetful_sequence_has_negative_transfer_and_positive_forgetting():
    assert average_accuracy(FORGETFUL) == pytest.approx(0.4)
    assert backward_transfer(FORGETFUL) == pytest.approx(-0.15)
    assert forgetting(FORGETFUL) == pytest.approx(0.15)


def test_summarize_averages_over_sequences_with_standard_errors():
    summary = summarize([MATRIX, FORGETFUL])
    # two values a, b: mean (a + b) / 2, sample sd |a - b| / sqrt(2), standard error |a - b| / 2
    assert summary.average_accuracy.mean == pytest.approx((2.3 / 3 + 0.4) / 2)
    assert summary.average_accuracy.stderr == pytest.approx((2.3 / 3 - 0.4) / 2)
    assert (summary.backward_transfer.mean, summary.backward_transfer.stderr) == pytest.approx((0.075, 0.225))
    assert (summary.forgetting.mean, summary.forgetting.stderr) == pytest.approx((0.0, 0.15))
    assert summary.forgetting.n == 2
    assert summarize([MATRIX]).backward_transfer.stderr is None


def test_estimate_of_three_values():
    result = estimate([1.0, 2.0, 6.0])  # mean 3, sample variance (4 + 1 + 9) / 2 = 7
    assert (result.mean, result.stderr, result.n) == pytest.approx((3.0, math.sqrt(7 / 3), 3))


def test_mean_matrix_is_element_wise_below_the_diagonal():
    expected = [[0.4, None, None], [0.5, 0.5, None], [0.4, 0.65, 0.7]]
    for row, expected_row in zip(mean_matrix([MATRIX, FORGETFUL]), expected, strict=True):
        assert row == pytest.approx(expected_row)


def test_bad_matrices_are_clear_errors():
    with pytest.raises(ValueError, match=r"A\[2\]\[1\] is None; entries on and below the diagonal must be numbers"):
        average_accuracy([[0.4], [0.3, 0.5], [0.2, None, 0.6]])
    with pytest.raises(ValueError, match=r"row 1 has 1 entries; it needs accuracies on documents 0..1"):
        forgetting([[0.4], [0.3]])
    with pytest.raises(ValueError, match="needs at least 2 steps, the matrix has 1"):
        backward_transfer([[0.4]])
    with pytest.raises(ValueError, match="same number of steps"):
        mean_matrix([MATRIX, [[0.1]]])


def test_spearman_with_ties_matches_the_hand_computation():
    # x ranks [1, 2.5, 2.5, 4], y ranks [1, 2, 3, 4]: rho = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert spearman([0.1, 0.5, 0.5, 0.9], [10, 20, 30, 40]) == pytest.approx(3 / math.sqrt(10))
    assert spearman([1, 2, 3], [9, 4, 1]) == pytest.approx(-1.0)
    assert spearman([3, 1, 2], [30, 10, 20]) == pytest.approx(1.0)


def test_spearman_is_nan_for_constant_input_and_checks_lengths():
    assert math.isnan(spearman([0.0, 0.0, 0.0], [1, 2, 3]))
    with pytest.raises(ValueError, match="one length, got 3 and 2"):
        spearman([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least two pairs"):
        spearman([1], [1])
