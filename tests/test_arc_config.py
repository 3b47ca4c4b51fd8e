"""Tests for seal_lm.domains.arc.config: reading the JSON self-edit and rejecting bad ones with a reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seal_lm.domains.arc.config import CONFIG_SCHEMA, ConfigRejected, TTTConfig, check_step_budget, parse_config
from seal_lm.domains.base import SelfEditRejected

SEAL_EXAMPLE = {
    "data_generation": {
        "use_basic_augmentations": True,
        "use_size_augmentations": False,
        "use_chain_augmentations": True,
        "use_repeat_augmentations": False,
    },
    "training": {"strategy": "train_using_output_tokens", "learning_rate": 5e-4, "num_train_epochs": 3},
}
EXPECTED = TTTConfig(families=("basic", "chain"), strategy="train_using_output_tokens", learning_rate=5e-4, epochs=3)


def edited(group: str | None, key: str, value=None, *, delete: bool = False) -> str:
    """SEAL_EXAMPLE as JSON with one field changed (or deleted)."""
    config = json.loads(json.dumps(SEAL_EXAMPLE))
    target = config if group is None else config[group]
    if delete:
        del target[key]
    else:
        target[key] = value
    return json.dumps(config)


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(SEAL_EXAMPLE),
        "Sure! Here is my configuration:\n```json\n" + json.dumps(SEAL_EXAMPLE, indent=2) + "\n```\nGood luck.",
        "I pick {basic and chain}. " + json.dumps(SEAL_EXAMPLE),  # a brace in prose before the object
        json.dumps({**SEAL_EXAMPLE["data_generation"], **SEAL_EXAMPLE["training"]}),  # flat form
    ],
    ids=["bare", "prose-and-fence", "brace-in-prose", "flat"],
)
def test_valid_configs_parse(text):
    config = parse_config(text)
    assert config == EXPECTED
    assert config.loss_on == "completion"


def test_colour_permutations_default_to_on_and_can_be_turned_off():
    assert parse_config(json.dumps(SEAL_EXAMPLE)).colour_permutations  # SEAL's format has no such key
    assert not parse_config(edited("data_generation", "use_colour_permutations", False)).colour_permutations
    assert parse_config(edited("data_generation", "use_colour_permutations", True)) == EXPECTED


def test_to_json_round_trips_and_strategies_map_to_loss():
    assert parse_config(EXPECTED.to_json()) == EXPECTED
    without_colours = TTTConfig(colour_permutations=False)
    assert parse_config(without_colours.to_json()) == without_colours
    assert TTTConfig(strategy="train_using_all_tokens").loss_on == "all"
    assert parse_config(TTTConfig(families=()).to_json()).families == ()


@pytest.mark.parametrize(
    "text, reason",
    [
        ("no json here", "no complete JSON object"),
        ('{"data_generation": {"use_basic_augmentations": tr', "no complete JSON object"),
        (
            edited("data_generation", "use_basic_augmentations", "yes"),
            "use_basic_augmentations must be true or false, got 'yes'",
        ),
        (edited("data_generation", "use_size_augmentations", 1), "use_size_augmentations must be true or false, got 1"),
        (edited("data_generation", "use_repeat_augmentations", delete=True), "missing key 'use_repeat_augmentations'"),
        (
            edited("data_generation", "use_colour_permutations", "no"),
            "use_colour_permutations must be true or false, got 'no'",
        ),
        (edited("data_generation", "use_color_augmentations", True), "unknown key 'use_color_augmentations'"),
        (
            edited("training", "strategy", "train_on_everything"),
            "strategy must be one of train_using_all_tokens, train_using_output_tokens",
        ),
        (edited("training", "strategy", 1), "strategy must be a string"),
        (edited("training", "learning_rate", 0), r"learning_rate must be in \(0, 0.01\], got 0"),
        (edited("training", "learning_rate", -1e-4), r"learning_rate must be in \(0, 0.01\]"),
        (edited("training", "learning_rate", 0.1), r"learning_rate must be in \(0, 0.01\], got 0.1"),
        (edited("training", "learning_rate", "1e-4"), "learning_rate must be a number, got '1e-4'"),
        (edited("training", "learning_rate", True), "learning_rate must be a number, got True"),
        (edited("training", "num_train_epochs", 0), "num_train_epochs must be from 1 to 10, got 0"),
        (edited("training", "num_train_epochs", 11), "num_train_epochs must be from 1 to 10, got 11"),
        (edited("training", "num_train_epochs", 2.5), "num_train_epochs must be a whole number, got 2.5"),
        (edited("training", "num_train_epochs", delete=True), "missing key 'num_train_epochs'"),
        (edited(None, "training", "fast"), "'training' must be an object"),
        (edited(None, "strategy", "train_using_all_tokens"), "key 'strategy' is given twice"),
        ('{"learning_rate": NaN, "x": 1}', "unknown key 'x'"),
    ],
)
def test_each_invalid_field_is_rejected_with_its_reason(text, reason):
    with pytest.raises(ConfigRejected, match=reason):
        parse_config(text)


def test_non_finite_learning_rate_is_rejected():
    with pytest.raises(ConfigRejected, match="learning_rate"):
        parse_config(edited("training", "learning_rate", float("nan")))  # json.dumps writes NaN, json.loads reads it


@given(st.data())
def test_every_configuration_the_schema_allows_parses(data):
    """Constrained decoding writes only what CONFIG_SCHEMA allows; parse_config must accept all of it."""

    def value(schema):
        return (
            data.draw(st.booleans()) if schema.get("type") == "boolean" else data.draw(st.sampled_from(schema["enum"]))
        )

    config = {
        group: {key: value(s) for key, s in spec["properties"].items()}
        for group, spec in CONFIG_SCHEMA["properties"].items()
    }
    parsed = parse_config(json.dumps(config, separators=(",", ":")))
    assert (
        parsed.learning_rate == config["training"]["learning_rate"]
        and parsed.epochs == config["training"]["num_train_epochs"]
    )


def test_rejections_are_self_edit_rejections():
    """The loops catch SelfEditRejected (reward 0); a config rejection must be one."""
    assert issubclass(ConfigRejected, SelfEditRejected)


def test_step_budget_counts_batches_times_epochs():
    check_step_budget(num_examples=100, epochs=3, batch_size=1, max_steps=300)
    check_step_budget(num_examples=101, epochs=3, batch_size=2, max_steps=153)  # ceil(101 / 2) * 3
    with pytest.raises(ConfigRejected, match="101 examples x 3 epochs = 303 training steps, over the budget of 300"):
        check_step_budget(num_examples=101, epochs=3, batch_size=1, max_steps=300)
