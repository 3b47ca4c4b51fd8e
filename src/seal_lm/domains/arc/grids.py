"""ARC grids and the text format a language model reads and writes them in.

A grid is a rectangle of colours 0-9, stored as a tuple of row tuples: immutable and hashable, so
predictions can be counted in a vote and used as dictionary keys.

Text format: one digit per cell, no separators, one row per line::

    input:
    0120
    3345
    output:
    21
    end

Why this format: in the tokenizers of the small models we train (SmolLM2, Qwen2.5, Llama 2,
Mistral) every digit is its own token and a newline is one token, so a cell costs exactly one
token, rows are marked by newlines, and a 30x30 grid fits in 930 tokens. Separating cells with
spaces would double that. (Llama 3 style vocabularies group up to three digits; the format still
round-trips there, a cell just no longer maps to one token.)

One demonstration is ``prompt + completion`` of :func:`format_example`; a task prompt is the
demonstrations followed by the query's prompt part (:func:`format_task`). Test-time-training
examples and test predictions therefore share one format: the model always completes the output
grid after ``output:`` and ends it with the end marker.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Grid = tuple[tuple[int, ...], ...]
Pair = tuple[Grid, Grid]  # (input, output)

INPUT_MARKER = "input:"
OUTPUT_MARKER = "output:"
END_MARKER = "end"  # closes every output grid; answer generation stops at it


def to_grid(rows: Iterable[Iterable[int]]) -> Grid:
    """A :data:`Grid` from nested lists (or a 2-D array); raises ``ValueError`` if not a rectangle of 0-9."""
    grid = tuple(tuple(row) for row in rows)
    if not grid or not grid[0]:
        raise ValueError("a grid needs at least one row and one column")
    if any(len(row) != len(grid[0]) for row in grid):
        raise ValueError(f"grid rows have different lengths: {sorted({len(row) for row in grid})}")
    for row in grid:
        for cell in row:
            # isinstance(True, int) holds, so booleans are excluded explicitly; numpy ints are accepted.
            if isinstance(cell, bool) or not hasattr(cell, "__index__") or not 0 <= cell <= 9:
                raise ValueError(f"grid cells must be integers 0-9, found {cell!r}")
    return tuple(tuple(int(cell) for cell in row) for row in grid)


def grid_to_lists(grid: Grid) -> list[list[int]]:
    """The grid as nested lists (for JSON)."""
    return [list(row) for row in grid]


def format_grid(grid: Grid) -> str:
    """One digit per cell, one row per line, no trailing newline."""
    return "\n".join("".join(str(cell) for cell in row) for row in grid)


def parse_grid(text: str) -> Grid | None:
    """The grid written in ``text`` (surrounding whitespace ignored), or None if it is not one.

    Never raises: model output with ragged rows, non-digits or nothing at all gives None.
    """
    rows = [line.strip() for line in text.strip().split("\n")]
    if not rows[0] or any(len(row) != len(rows[0]) or not (row.isascii() and row.isdigit()) for row in rows):
        return None
    return tuple(tuple(int(char) for char in row) for row in rows)


def format_example(input_grid: Grid, output_grid: Grid) -> tuple[str, str]:
    """One input/output pair as ``(prompt, completion)``: the prompt ends where the output grid starts."""
    return format_query(input_grid), format_completion(output_grid)


def format_query(input_grid: Grid) -> str:
    """The prompt part of an example: the input grid and the output marker."""
    return f"{INPUT_MARKER}\n{format_grid(input_grid)}\n{OUTPUT_MARKER}\n"


def format_completion(output_grid: Grid) -> str:
    """What the model writes: the output grid and the end marker."""
    return f"{format_grid(output_grid)}\n{END_MARKER}"


def parse_completion(text: str) -> Grid | None:
    """The grid a model wrote, read up to the end marker; None if it is not a grid."""
    return parse_grid(text.split(END_MARKER, 1)[0])


def format_demonstrations(demonstrations: Sequence[Pair]) -> str:
    """Demonstrations one after another, each a complete example."""
    return "\n".join(prompt + completion for prompt, completion in (format_example(i, o) for i, o in demonstrations))


def format_task(demonstrations: Sequence[Pair], test_input: Grid) -> str:
    """The prompt that asks for ``test_input``'s output after the demonstrations."""
    shown = format_demonstrations(demonstrations)
    return f"{shown}\n{format_query(test_input)}" if shown else format_query(test_input)
