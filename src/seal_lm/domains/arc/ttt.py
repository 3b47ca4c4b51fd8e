"""Test-time-training data: leave-one-out tasks built from a task's demonstrations, augmented.

With demonstrations d1..dn, the leave-one-out task for di asks for di's output after seeing the
other n-1 demonstrations: exactly the shape of the real test prompt, built only from known pairs
(the test outputs are never used). Each leave-one-out task appears once per chosen augmentation
(applied to every grid of it), plus ``permuted_copies`` copies with a random colour permutation
and the demonstrations shuffled. Duplicates (symmetric grids give some) are dropped, and a seeded
sample caps the total.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from seal_lm.adapt.lora import TrainExample
from seal_lm.domains.arc.augment import Augmentation, ColourPermutation
from seal_lm.domains.arc.grids import Grid, Pair, format_completion, format_task


def leave_one_out(demonstrations: Sequence[Pair]) -> list[tuple[list[Pair], Pair]]:
    """Each demonstration in turn as the query, with the others (in order) as its demonstrations."""
    return [([*demonstrations[:i], *demonstrations[i + 1 :]], query) for i, query in enumerate(demonstrations)]


def ttt_examples(
    demonstrations: Sequence[Pair],
    transforms: Sequence[Augmentation],
    rng: random.Random,
    permuted_copies: int = 1,
    max_examples: int = 250,
    max_chars: int | None = None,
) -> list[TrainExample]:
    """Augmented leave-one-out training examples (prompt = task prompt, completion = query output).

    ``max_chars`` drops examples longer than that many characters: for these ASCII texts a token
    covers at least one character, so this keeps every example within a token limit of the same size.
    """
    examples = []
    for transform in transforms:
        for context, query in leave_one_out(demonstrations):
            examples.append(_example(context, query, [transform]))
            for _ in range(permuted_copies):
                shuffled = rng.sample(context, len(context))
                examples.append(_example(shuffled, query, [transform, ColourPermutation.random(rng)]))
    examples = list(dict.fromkeys(examples))
    if max_chars is not None:
        examples = [e for e in examples if len(e.prompt) + len(e.completion) <= max_chars]
    if len(examples) > max_examples:
        examples = [examples[i] for i in sorted(rng.sample(range(len(examples)), max_examples))]
    return examples


def _example(
    context: Sequence[Pair], query: Pair, transforms: Sequence[Augmentation | ColourPermutation]
) -> TrainExample:
    def transformed(grid: Grid) -> Grid:
        for transform in transforms:
            grid = transform.apply(grid)
        return grid

    prompt = format_task([(transformed(i), transformed(o)) for i, o in context], transformed(query[0]))
    return TrainExample(completion=format_completion(transformed(query[1])), prompt=prompt)
