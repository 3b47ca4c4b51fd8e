"""Invertible grid augmentations: the families a SEAL self-edit chooses from, and colour permutations.

Each augmentation is a small named object with ``apply(grid)`` and ``invert(grid)``. Applied to
every grid of a task (inputs and outputs alike) it gives a new task with the same rule in a new
guise: more training data for test-time training, and more views of a test input to vote over
(a prediction made on a view is mapped back with ``invert``).

Families, as in SEAL:

- ``basic``: rotations by 90/180/270 degrees, horizontal and vertical flips, transpose and
  anti-transpose (the 7 non-trivial symmetries of a square);
- ``size``: x2 upscaling (each cell becomes a 2x2 block);
- ``chain``: each basic augmentation followed by x2 upscaling;
- ``repeat``: tiling the grid 2x1, 1x2 and 2x2.

``invert`` returns None when its argument cannot be the image of the augmentation (an odd-sized
grid for a x2 upscale, tiles that differ for a tiling): a model's prediction may be anything.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from seal_lm.choices import check_choice
from seal_lm.domains.arc.grids import Grid

FAMILIES = ("basic", "size", "chain", "repeat")


@dataclass(frozen=True)
class Augmentation:
    """A named grid transformation with its inverse."""

    name: str
    forward: Callable[[Grid], Grid]
    backward: Callable[[Grid], Grid | None]

    def apply(self, grid: Grid) -> Grid:
        """The augmented grid."""
        return self.forward(grid)

    def invert(self, grid: Grid) -> Grid | None:
        """The grid this one is the augmentation of, or None if it is not the image of any grid."""
        return self.backward(grid)


# --- the symmetries of a square -------------------------------------------------------------------


def identity(grid: Grid) -> Grid:
    return grid


def rotate90(grid: Grid) -> Grid:
    """Clockwise quarter turn."""
    return tuple(zip(*grid[::-1]))


def rotate180(grid: Grid) -> Grid:
    return tuple(row[::-1] for row in grid[::-1])


def rotate270(grid: Grid) -> Grid:
    """Anticlockwise quarter turn."""
    return tuple(zip(*grid))[::-1]


def flip_horizontal(grid: Grid) -> Grid:
    """Mirror left to right."""
    return tuple(row[::-1] for row in grid)


def flip_vertical(grid: Grid) -> Grid:
    """Mirror top to bottom."""
    return grid[::-1]


def transpose(grid: Grid) -> Grid:
    """Mirror along the main diagonal."""
    return tuple(zip(*grid))


def anti_transpose(grid: Grid) -> Grid:
    """Mirror along the anti-diagonal."""
    return rotate180(transpose(grid))


BASIC = (
    Augmentation("rotate90", rotate90, rotate270),
    Augmentation("rotate180", rotate180, rotate180),
    Augmentation("rotate270", rotate270, rotate90),
    Augmentation("flip_horizontal", flip_horizontal, flip_horizontal),
    Augmentation("flip_vertical", flip_vertical, flip_vertical),
    Augmentation("transpose", transpose, transpose),
    Augmentation("anti_transpose", anti_transpose, anti_transpose),
)
IDENTITY = Augmentation("identity", identity, identity)


# --- size and repetition --------------------------------------------------------------------------


def upscale(grid: Grid, factor: int = 2) -> Grid:
    """Every cell becomes a ``factor`` x ``factor`` block."""
    return tuple(tuple(cell for cell in row for _ in range(factor)) for row in grid for _ in range(factor))


def downscale(grid: Grid, factor: int = 2) -> Grid | None:
    """The grid that :func:`upscale` turns into ``grid``, or None if ``grid`` is not made of uniform blocks."""
    if len(grid) % factor or len(grid[0]) % factor:
        return None
    small = tuple(row[::factor] for row in grid[::factor])
    return small if upscale(small, factor) == grid else None


def tile(grid: Grid, rows: int, columns: int) -> Grid:
    """``rows`` x ``columns`` copies of the grid side by side."""
    return tuple(row * columns for row in grid) * rows


def untile(grid: Grid, rows: int, columns: int) -> Grid | None:
    """The top-left tile, or None if the grid is not ``rows`` x ``columns`` copies of it."""
    if len(grid) % rows or len(grid[0]) % columns:
        return None
    first = tuple(row[: len(row) // columns] for row in grid[: len(grid) // rows])
    return first if tile(first, rows, columns) == grid else None


UPSCALE = Augmentation("upscale2", upscale, downscale)
REPEAT = tuple(
    Augmentation(f"tile{r}x{c}", lambda g, r=r, c=c: tile(g, r, c), lambda g, r=r, c=c: untile(g, r, c))
    for r, c in ((2, 1), (1, 2), (2, 2))
)


def compose(first: Augmentation, then: Augmentation) -> Augmentation:
    """``first`` followed by ``then``; the inverse undoes ``then`` first."""

    def backward(grid: Grid) -> Grid | None:
        undone = then.invert(grid)
        return None if undone is None else first.invert(undone)

    return Augmentation(f"{first.name}+{then.name}", lambda g: then.apply(first.apply(g)), backward)


_BY_FAMILY = {
    "basic": BASIC,
    "size": (UPSCALE,),
    "chain": tuple(compose(basic, UPSCALE) for basic in BASIC),
    "repeat": REPEAT,
}


def augmentations(families: Sequence[str], include_identity: bool = True) -> list[Augmentation]:
    """The augmentations of the given families, in a fixed order, identity first when included."""
    for family in families:
        check_choice(family, FAMILIES, "augmentation family")
    chosen = [IDENTITY] if include_identity else []
    for family in FAMILIES:  # canonical order, whatever order the caller listed them in
        if family in families:
            chosen.extend(_BY_FAMILY[family])
    return chosen


# --- colours --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColourPermutation:
    """A relabelling of colours 1-9; 0 (the usual background) stays 0."""

    mapping: tuple[int, ...]  # mapping[colour] is the new colour

    def __post_init__(self):
        if sorted(self.mapping) != list(range(10)) or self.mapping[0] != 0:
            raise ValueError(f"a colour permutation maps 0-9 onto 0-9 and keeps 0 fixed, got {self.mapping}")

    @classmethod
    def random(cls, rng: random.Random) -> ColourPermutation:
        """A permutation drawn from ``rng`` (seed it for reproducible data)."""
        colours = list(range(1, 10))
        rng.shuffle(colours)
        return cls((0, *colours))

    @property
    def name(self) -> str:
        return "colours" + "".join(map(str, self.mapping))

    def apply(self, grid: Grid) -> Grid:
        return tuple(tuple(self.mapping[cell] for cell in row) for row in grid)

    def invert(self, grid: Grid) -> Grid:
        inverse = [0] * 10
        for colour, new in enumerate(self.mapping):
            inverse[new] = colour
        return tuple(tuple(inverse[cell] for cell in row) for row in grid)
