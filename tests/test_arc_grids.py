"""Tests for seal_lm.domains.arc.grids: the grid text format and the task prompt layout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seal_lm.domains.arc.grids import (
    END_MARKER,
    format_completion,
    format_example,
    format_grid,
    format_task,
    parse_completion,
    parse_grid,
    to_grid,
)


@st.composite
def grids(draw, max_side: int = 10):
    """Random grids of 1..max_side rows and columns, colours 0-9."""
    height = draw(st.integers(1, max_side))
    width = draw(st.integers(1, max_side))
    row = st.tuples(*[st.integers(0, 9)] * width)
    return tuple(draw(st.lists(row, min_size=height, max_size=height)))


@given(grids())
def test_format_then_parse_round_trips_exactly(grid):
    assert parse_grid(format_grid(grid)) == grid


@given(grids())
def test_a_completion_round_trips_with_or_without_the_end_marker_and_trailing_text(grid):
    assert parse_completion(format_completion(grid)) == grid
    assert parse_completion(format_completion(grid) + "\ninput:\n123") == grid
    assert parse_completion(format_grid(grid) + "\n") == grid


def test_format_is_one_digit_per_cell_and_one_row_per_line():
    assert format_grid(((0, 1, 2), (3, 4, 5))) == "012\n345"


@pytest.mark.parametrize(
    "text",
    ["", "   \n  ", "12\n3", "1 2\n3 4", "12\nab", "1,2", "[[1, 2]]", "12\n\n34", "-1", "²³", "end"],
)
def test_malformed_text_parses_to_none(text):
    assert parse_grid(text) is None


def test_parse_ignores_surrounding_whitespace_and_carriage_returns():
    assert parse_grid("\n 01\r\n23 \n") == ((0, 1), (2, 3))


def test_to_grid_accepts_lists_and_rejects_non_grids_with_a_reason():
    assert to_grid([[1, 2], [3, 4]]) == ((1, 2), (3, 4))
    for bad, reason in [
        ([], "at least one row"),
        ([[]], "at least one row"),
        ([[1], [1, 2]], "different lengths"),
        ([[10]], "0-9"),
        ([[True]], "0-9"),
        ([["1"]], "0-9"),
        ([[1.0]], "0-9"),
    ]:
        with pytest.raises(ValueError, match=reason):
            to_grid(bad)


def test_a_task_prompt_is_its_demonstrations_then_the_query_prompt():
    a, b, c = ((1,),), ((2,),), ((3,),)
    prompt, completion = format_example(a, b)
    assert prompt == "input:\n1\noutput:\n"
    assert completion == f"2\n{END_MARKER}"
    assert format_task([(a, b)], c) == f"{prompt}{completion}\n" + format_example(c, c)[0]
    # With no demonstrations a task prompt is just the query: a leave-one-out task of one demonstration.
    assert format_task([], c) == format_example(c, a)[0]
