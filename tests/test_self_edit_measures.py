"""Tests for seal_lm.report.self_edits: how a self-edit's length and copying from its passage are measured."""

from __future__ import annotations

import pytest

from seal_lm.report.self_edits import MEASURES, copied_share, mean_copied_share, mean_lines, mean_words

PROMPT = (
    "Passage:\nThe Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.\nList its implications."
)


def test_a_self_edit_copying_the_passage_word_for_word_is_all_copied():
    assert copied_share("The Eiffel Tower is in Paris.", PROMPT) == 1.0
    assert copied_share("the eiffel tower, is in PARIS", PROMPT) == 1.0  # case and punctuation do not matter


def test_a_self_edit_in_its_own_words_copies_nothing():
    assert copied_share("A famous iron landmark stands in the French capital city.", PROMPT) == 0.0


def test_the_share_counts_word_5_grams():
    # 7 words → 3 five-grams; the first two occur in the passage ("it was completed in 1889", "was completed in 1889 for")
    assert copied_share("It was completed in 1889 for everyone", PROMPT) == pytest.approx(2 / 3)
    assert copied_share("in Paris", PROMPT) == 0.0  # under five words: no phrase to compare


def test_the_mean_leaves_out_self_edits_that_wrote_nothing():
    edits = [
        ("The Eiffel Tower is in Paris.", PROMPT),
        ("A famous iron landmark in France today.", PROMPT),
        (" \n", PROMPT),
    ]
    assert mean_copied_share(edits) == pytest.approx(0.5)
    assert mean_copied_share([("", PROMPT)]) is None
    assert mean_copied_share([]) is None


def test_length_measures():
    edits = [("1. one fact\n\n2. another fact here", PROMPT), ("single", PROMPT)]
    assert mean_words(edits) == pytest.approx((7 + 1) / 2)
    assert mean_lines(edits) == pytest.approx((2 + 1) / 2)
    assert mean_words([]) is None and mean_lines([]) is None


def test_every_measure_is_shown_with_a_title():
    assert list(MEASURES) == ["words", "lines", "copied"]
    assert all(title and callable(measure) for title, measure in MEASURES.values())
