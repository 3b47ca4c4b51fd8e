"""Tests for seal_lm.domains.arc.augment: every augmentation is inverted exactly, families are as in SEAL."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_arc_grids import grids

from seal_lm.domains.arc.augment import (
    FAMILIES,
    ColourPermutation,
    augmentations,
    downscale,
    rotate90,
    tile,
    untile,
    upscale,
)

ALL = augmentations(FAMILIES)


def test_families_hold_the_expected_augmentations():
    assert [a.name for a in augmentations(["basic"])] == [
        "identity",
        "rotate90",
        "rotate180",
        "rotate270",
        "flip_horizontal",
        "flip_vertical",
        "transpose",
        "anti_transpose",
    ]
    assert [a.name for a in augmentations(["size"], include_identity=False)] == ["upscale2"]
    assert [a.name for a in augmentations(["repeat"], include_identity=False)] == ["tile2x1", "tile1x2", "tile2x2"]
    chain = augmentations(["chain"], include_identity=False)
    assert len(chain) == 7 and all(a.name.endswith("+upscale2") for a in chain)
    # Canonical order whatever order the families are listed in; all names distinct.
    assert augmentations(["repeat", "basic"]) == augmentations(["basic", "repeat"])
    assert len({a.name for a in ALL}) == len(ALL) == 1 + 7 + 1 + 7 + 3


def test_unknown_family_is_named_with_the_alternatives():
    with pytest.raises(ValueError, match="'rotate'.*basic, size, chain, repeat"):
        augmentations(["rotate"])


@pytest.mark.parametrize("augmentation", ALL, ids=lambda a: a.name)
@given(grid=grids())
def test_every_augmentation_is_inverted_exactly(augmentation, grid):
    assert augmentation.invert(augmentation.apply(grid)) == grid


@given(grid=grids(), seed=st.integers(0, 2**32))
def test_colour_permutations_invert_exactly_and_keep_background(grid, seed):
    permutation = ColourPermutation.random(random.Random(seed))
    permuted = permutation.apply(grid)
    assert permutation.invert(permuted) == grid
    assert [[cell == 0 for cell in row] for row in permuted] == [[cell == 0 for cell in row] for row in grid]


def test_colour_permutations_are_seeded():
    draw = [ColourPermutation.random(random.Random(seed)).mapping for seed in (1, 1, 2)]
    assert draw[0] == draw[1] != draw[2]
    with pytest.raises(ValueError, match="keeps 0 fixed"):
        ColourPermutation((1, 0, 2, 3, 4, 5, 6, 7, 8, 9))


def test_known_images():
    grid = ((1, 2, 3), (4, 5, 6))
    assert rotate90(grid) == ((4, 1), (5, 2), (6, 3))
    named = {a.name: a.apply(grid) for a in augmentations(["basic"])}
    assert named["rotate270"] == ((3, 6), (2, 5), (1, 4))
    assert named["flip_horizontal"] == ((3, 2, 1), (6, 5, 4))
    assert named["flip_vertical"] == ((4, 5, 6), (1, 2, 3))
    assert named["transpose"] == ((1, 4), (2, 5), (3, 6))
    assert named["anti_transpose"] == ((6, 3), (5, 2), (4, 1))
    assert upscale(((1, 2),)) == ((1, 1, 2, 2), (1, 1, 2, 2))
    assert tile(((1, 2),), 2, 1) == ((1, 2), (1, 2))
    assert tile(((1, 2),), 1, 2) == ((1, 2, 1, 2),)


@pytest.mark.parametrize(
    "grid",
    [((1, 1, 2),), ((1, 1), (1, 2)), ((1,),)],  # odd width, a non-uniform block, too small
)
def test_downscale_of_a_grid_that_is_no_upscale_is_none(grid):
    assert downscale(grid) is None


def test_untile_of_a_grid_whose_tiles_differ_is_none():
    assert untile(((1, 2), (1, 3)), 1, 2) is None
    assert untile(((1, 2), (3, 4)), 2, 1) is None
    assert untile(((1, 2, 3),), 1, 2) is None  # width not divisible
    chain = augmentations(["chain"], include_identity=False)[0]
    assert chain.invert(((1, 2),)) is None
