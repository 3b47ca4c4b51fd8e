"""The ARC self-edit: a JSON test-time-training configuration written by the model.

SEAL's format, which the model is asked for::

    {"data_generation": {"use_basic_augmentations": true, "use_size_augmentations": false,
                         "use_chain_augmentations": false, "use_repeat_augmentations": false},
     "training": {"strategy": "train_using_all_tokens", "learning_rate": 1e-4, "num_train_epochs": 2}}

plus one key of ours in ``data_generation``, ``use_colour_permutations`` (also train on copies with
the colours permuted and the demonstrations shuffled): right for most tasks, wrong for the ones whose
rule is about particular colours. It may be left out (SEAL's format has no such key), and then is
true. The same keys without the two outer groups (one flat object) are accepted too: the groups carry
no information, and a small model that drops them has still said everything. Every other key is
required and no unknown key is allowed, so a rejection always names exactly what to fix.

:func:`parse_config` reads the first JSON object in the model's text (prose and ``` fences
around it are fine) and raises :class:`ConfigRejected` with the reason when it is unusable.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from seal_lm.domains.base import SelfEditRejected

AUGMENTATION_KEYS = {  # JSON key -> augmentation family
    "use_basic_augmentations": "basic",
    "use_size_augmentations": "size",
    "use_chain_augmentations": "chain",
    "use_repeat_augmentations": "repeat",
}
COLOUR_KEY = "use_colour_permutations"  # optional, default true
STRATEGIES = {"train_using_all_tokens": "all", "train_using_output_tokens": "completion"}  # -> loss_on
MAX_LEARNING_RATE = 1e-2
MAX_EPOCHS = 10
_TRAINING_KEYS = ("strategy", "learning_rate", "num_train_epochs")

# What each true/false key of ``data_generation`` means, in the words the self-edit prompt uses.
_SWITCH_MEANINGS = {
    "use_basic_augmentations": "also train on rotated, flipped and transposed copies of the examples",
    "use_size_augmentations": "also train on copies with every grid upscaled 2x",
    "use_chain_augmentations": "also train on rotated or flipped copies upscaled 2x",
    "use_repeat_augmentations": "also train on copies with every grid tiled 2x1, 1x2 and 2x2",
    COLOUR_KEY: "also train on copies with the colours swapped around (false when the rule depends on particular colours)",
}

# The schema as the self-edit prompt spells it out, built from the constants it must agree with.
CONFIG_INSTRUCTIONS = "\n".join(
    [
        '{"data_generation": {' + ", ".join(f'"{key}": BOOL' for key in _SWITCH_MEANINGS) + "}, "
        '"training": {"strategy": STRATEGY, "learning_rate": NUMBER, "num_train_epochs": INTEGER}}',
        "where",
        *(f"- {key}: true or false; {meaning}" for key, meaning in _SWITCH_MEANINGS.items()),
        f"- strategy: {' or '.join(map(json.dumps, STRATEGIES))} (learn whole examples, or only the output grids)",
        f"- learning_rate: a number above 0 and at most {MAX_LEARNING_RATE:g}, for example 0.0001",
        f"- num_train_epochs: a whole number from 1 to {MAX_EPOCHS}",
    ]
)

# The same schema as JSON Schema, for constrained decoding (``--constrained-self-edits``): the model
# then always writes this shape and chooses only the values. Learning rates come from a grid (a free
# number could run on digit after digit); the step budget is still checked when the plan is made.
SCHEMA_LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
CONFIG_SCHEMA = {
    "type": "object",
    "properties": {
        "data_generation": {
            "type": "object",
            "properties": {key: {"type": "boolean"} for key in (*AUGMENTATION_KEYS, COLOUR_KEY)},
            "required": [*AUGMENTATION_KEYS, COLOUR_KEY],
            "additionalProperties": False,
        },
        "training": {
            "type": "object",
            "properties": {
                "strategy": {"enum": list(STRATEGIES)},
                "learning_rate": {"enum": list(SCHEMA_LEARNING_RATES)},
                "num_train_epochs": {"enum": list(range(1, MAX_EPOCHS + 1))},
            },
            "required": list(_TRAINING_KEYS),
            "additionalProperties": False,
        },
    },
    "required": ["data_generation", "training"],
    "additionalProperties": False,
}


class ConfigRejected(SelfEditRejected):
    """A configuration that cannot be used for training; the message says why (reward 0)."""


@dataclass(frozen=True)
class TTTConfig:
    """Which augmentation families to train on, and how."""

    families: tuple[str, ...] = ("basic",)
    colour_permutations: bool = True
    strategy: str = "train_using_all_tokens"
    learning_rate: float = 1e-4
    epochs: int = 2

    def __post_init__(self):
        unknown = [f for f in self.families if f not in AUGMENTATION_KEYS.values()]
        if unknown:
            raise ConfigRejected(
                f"unknown augmentation family {unknown[0]!r}; use {', '.join(AUGMENTATION_KEYS.values())}"
            )
        if self.strategy not in STRATEGIES:
            raise ConfigRejected(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if not (0 < self.learning_rate <= MAX_LEARNING_RATE and math.isfinite(self.learning_rate)):
            raise ConfigRejected(f"learning_rate must be in (0, {MAX_LEARNING_RATE:g}], got {self.learning_rate!r}")
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise ConfigRejected(f"num_train_epochs must be from 1 to {MAX_EPOCHS}, got {self.epochs!r}")

    @property
    def loss_on(self) -> str:
        """The inner loop's ``loss_on`` for this strategy."""
        return STRATEGIES[self.strategy]

    def to_json(self) -> str:
        """The configuration in SEAL's nested JSON format (what :func:`parse_config` reads back)."""
        return json.dumps(
            {
                "data_generation": {key: family in self.families for key, family in AUGMENTATION_KEYS.items()}
                | {COLOUR_KEY: self.colour_permutations},
                "training": {
                    "strategy": self.strategy,
                    "learning_rate": self.learning_rate,
                    "num_train_epochs": self.epochs,
                },
            }
        )


def parse_config(text: str) -> TTTConfig:
    """The configuration in the first JSON object of ``text``; raises :class:`ConfigRejected` if unusable."""
    fields = _flatten(_first_json_object(text))
    required = (*AUGMENTATION_KEYS, *_TRAINING_KEYS)
    for key in fields:
        if key not in (*required, COLOUR_KEY):
            raise ConfigRejected(f"unknown key {key!r}; allowed keys: {', '.join((*required, COLOUR_KEY))}")
    for key in required:
        if key not in fields:
            raise ConfigRejected(f"missing key {key!r}")
    fields.setdefault(COLOUR_KEY, True)
    for key in (*AUGMENTATION_KEYS, COLOUR_KEY):
        if not isinstance(fields[key], bool):
            raise ConfigRejected(f"{key} must be true or false, got {fields[key]!r}")
    if not isinstance(fields["strategy"], str):
        raise ConfigRejected(f"strategy must be a string, one of {', '.join(STRATEGIES)}; got {fields['strategy']!r}")
    learning_rate, epochs = fields["learning_rate"], fields["num_train_epochs"]
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)):
        raise ConfigRejected(f"learning_rate must be a number, got {learning_rate!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int):
        raise ConfigRejected(f"num_train_epochs must be a whole number, got {epochs!r}")
    return TTTConfig(
        families=tuple(family for key, family in AUGMENTATION_KEYS.items() if fields[key]),
        colour_permutations=fields[COLOUR_KEY],
        strategy=fields["strategy"],
        learning_rate=float(learning_rate),
        epochs=epochs,
    )


def check_step_budget(num_examples: int, epochs: int, batch_size: int, max_steps: int) -> None:
    """Raise :class:`ConfigRejected` if training would take more than ``max_steps`` optimiser steps."""
    steps = math.ceil(num_examples / batch_size) * epochs
    if steps > max_steps:
        raise ConfigRejected(
            f"{num_examples} examples x {epochs} epochs = {steps} training steps, over the budget of {max_steps}; "
            "choose fewer augmentations or epochs"
        )


def _first_json_object(text: str) -> dict:
    """The first ``{...}`` in ``text`` that parses as a JSON object."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            return decoder.raw_decode(text, start)[0]  # starting at "{", only an object can parse
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    raise ConfigRejected("no complete JSON object found; write the configuration as one JSON object")


def _flatten(config: dict) -> dict:
    """SEAL's two groups merged into one flat object; a flat object is returned as it is."""
    groups = {"data_generation", "training"}
    if not groups & config.keys():
        return config
    flat = {key: value for key, value in config.items() if key not in groups}
    for group in sorted(groups & config.keys()):
        if not isinstance(config[group], dict):
            raise ConfigRejected(f"{group!r} must be an object, got {config[group]!r}")
        for key, value in config[group].items():
            if key in flat:
                raise ConfigRejected(f"key {key!r} is given twice")
            flat[key] = value
    return flat
