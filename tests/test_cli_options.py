"""Flags from config dataclasses: ``Literal``, ``X | None`` and required fields; every choice from one
registry, shown by ``--help`` and checked with "Did you mean"."""

from __future__ import annotations

import argparse
import re
import typing
from dataclasses import dataclass, field
from typing import Literal

import pytest

from seal_lm.adapt.objectives import INNER_OBJECTIVES
from seal_lm.choices import check_choice
from seal_lm.cli import COMMANDS, build_parser, main
from seal_lm.cli.eval_knowledge import EvalKnowledgeConfig
from seal_lm.cli.options import add_config_flags, config_from_args, option, required
from seal_lm.cli.shared_options import ENGINES, EXECUTORS, GENERATORS
from seal_lm.cli.train import KEEP_RULES, KNOWLEDGE_REWARDS
from seal_lm.continual.guards import ACTIONS, STRATEGIES
from seal_lm.continual.versions import COMMIT_MODES
from seal_lm.domains.arc.data import SPLITS, VERSIONS
from seal_lm.domains.arc.domain import ArcDomain
from seal_lm.domains.knowledge.domain import ANSWER_STYLES, KnowledgeDomain
from seal_lm.domains.knowledge.self_edits import SELF_EDIT_STYLES
from seal_lm.loops.continual import PROBE_SOURCES
from seal_lm.model.loading import DTYPES, PROMPT_FORMATS

# Every flag that takes a choice, and the registry it comes from.
REGISTRIES = {
    "--engine": ENGINES,
    "--inner-objective": INNER_OBJECTIVES,
    "--generator": GENERATORS,
    "--dtype": DTYPES,
    "--compute-dtype": DTYPES,
    "--prompt-format": PROMPT_FORMATS,
    "--executor": EXECUTORS,
    "--self-edit-prompt": SELF_EDIT_STYLES,
    "--answer-style": ANSWER_STYLES,
    "--split": SPLITS,
    "--version": VERSIONS,
    "--keep-rule": KEEP_RULES,
    "--reward": KNOWLEDGE_REWARDS,
    "--commit": COMMIT_MODES,
    "--probes": PROBE_SOURCES,
    "--on-forgetting": ACTIONS,
    "--replay-strategy": STRATEGIES,
    "--setting": typing.get_args(typing.get_type_hints(EvalKnowledgeConfig)["setting"]),
}
CONDITIONS = {
    "knowledge": KnowledgeDomain.conditions,
    "continual": KnowledgeDomain.conditions,
    "arc": ArcDomain.conditions,
    "select-subset": ArcDomain.conditions,
}


def command_parser(group: str | None, name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in (group, name) if group else (name,):
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    return parser


def shown_choices(action: argparse.Action) -> list[str] | None:
    found = re.search(r"\(choices: ([^;]*);", action.help or "")
    return found.group(1).split(", ") if found else None


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(filter(None, c)) for c in COMMANDS])
def test_help_renders_and_every_choice_flag_shows_its_registry(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([word for word in command if word] + ["--help"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("usage: seal")

    for action in command_parser(*command)._actions:
        flag = action.option_strings[0] if action.option_strings else None
        registry = CONDITIONS[command[1]] if flag == "--conditions" else REGISTRIES.get(flag)
        if flag == "--version" and (command[0] == "ledger" or command[1] == "chat"):
            registry = None  # their --version is a model version, a number
        if flag == "--conditions" and command == ("arc", "select-subset"):
            continue  # fixed to ttt-oracle: no choice
        assert shown_choices(action) == (list(registry) if registry is not None else None), flag


@pytest.mark.parametrize(
    "argv, line",
    [
        (
            ["eval", "knowledge", "--engine", "seqential"],
            "Unknown --engine 'seqential'. Did you mean 'sequential'? Available: sequential, batched.",
        ),
        (
            ["eval", "knowledge", "--conditions", "base,pasage"],
            "Unknown --conditions 'pasage'. Did you mean 'passage'?",
        ),
        (
            ["eval", "arc", "--conditions", "ttt-orcale"],
            "Unknown --conditions 'ttt-orcale'. Did you mean 'ttt-oracle'?",
        ),
        (
            ["train", "knowledge", "--keep-rule", "best-of-5"],
            "Unknown --keep-rule 'best-of-5'. Did you mean 'best-of-k'?",
        ),
        (
            ["adapt", "--stream", "x", "--on-forgetting", "rejct"],
            "Unknown --on-forgetting 'rejct'. Did you mean 'reject'?",
        ),
        (["eval", "continual", "--replay-strategy", "lifo"], "Unknown --replay-strategy 'lifo'. Did you mean 'fifo'?"),
        (["demo", "--self-edit-prompt", "self_qa"], "Unknown --self-edit-prompt 'self_qa'. Did you mean 'self-qa'?"),
        (
            ["eval", "knowledge", "--setting", "cpu"],
            "Unknown --setting 'cpu'. Did you mean 'cpt'? Available: single, cpt.",
        ),
        (["eval", "knowledge", "--dtype", "xyz"], "Unknown --dtype 'xyz'. Available: float32, bfloat16, float16."),
    ],
)
def test_a_misspelt_choice_is_one_line_with_a_suggestion(argv, line, capsys):
    data = ["--data", "x.json"] if argv[1:2] in (["knowledge"], ["continual"]) else []
    assert main(argv + data) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"seal: error: {line}")


def test_check_choice_returns_the_value_or_raises_the_error_asked_for():
    assert check_choice("b", {"a": 1, "b": 2}, "letter") == "b"
    with pytest.raises(KeyError, match="Unknown letter 'c'. Available: a, b."):
        check_choice("c", ("a", "b"), "letter", error=KeyError)


# ---------------------------------------------------------------------------------------------
# Field kinds: Literal, X | None, required
# ---------------------------------------------------------------------------------------------


@dataclass
class Kinds:
    name: str = required("A name.")
    mode: Literal["fast", "slow"] = option("fast", "How.")
    limit: int | None = option(None, "At most this many (none: no limit).")
    tags: tuple[str, ...] = option(("x",), "Tags.", ("x", "y", "z"))
    loud: bool = option(False, "Shout.")
    count: int = field(default=1, metadata={"help": "How many."})


def parse_kinds(*flags: str, config: str | None = None) -> Kinds:
    parser = argparse.ArgumentParser()
    add_config_flags(parser, Kinds)
    return config_from_args(Kinds, parser.parse_args([*flags] + (["--config", config] if config else [])))


def test_literal_optional_and_required_fields_from_flags():
    assert parse_kinds("--name", "a") == Kinds(name="a")
    parsed = parse_kinds("--name", "a", "--mode", "slow", "--limit", "3", "--tags", "y,z", "--loud")
    assert parsed == Kinds(name="a", mode="slow", limit=3, tags=("y", "z"), loud=True)


def test_a_list_flag_given_twice_adds_to_itself():
    """``--label a=X --label b=Y`` is ``--label a=X,b=Y``: a repeated list flag never drops what came first."""
    assert parse_kinds("--name", "a", "--tags", "y", "--tags", "x,z").tags == ("y", "x", "z")


def test_literal_optional_and_required_fields_from_yaml(tmp_path):
    file = tmp_path / "kinds.yaml"
    file.write_text("name: a\nmode: slow\nlimit: null\ntags: [z]\nloud: yes\n")
    assert parse_kinds(config=str(file)) == Kinds(name="a", mode="slow", limit=None, tags=("z",), loud=True)


@pytest.mark.parametrize(
    "flags, message",
    [
        ([], "--name is required: A name."),
        (["--name", "a", "--mode", "slwo"], "Unknown --mode 'slwo'. Did you mean 'slow'? Available: fast, slow."),
        (["--name", "a", "--limit", "many"], "--limit: expected int, got 'many'."),
        (["--name", "a", "--tags", "x,w"], "Unknown --tags 'w'. Available: x, y, z."),
    ],
)
def test_field_kind_errors_name_the_flag(flags, message):
    with pytest.raises(ValueError) as caught:
        parse_kinds(*flags)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: a\nloud: maybe\n", "--loud: expected bool, got 'maybe'."),
        ("name: a\ncount: 2.5\n", "--count: expected int, got 2.5."),
        ("name: a\ncount: {a: 1}\n", "--count: expected int, got {'a': 1}."),
        ("name: [a, b]\n", "--name: expected str, got ['a', 'b']."),
        ("name: a\ntags: 5\n", "--tags: expected a comma-separated list, got 5."),
        ("name: a\nmode: [fast]\n", "--mode: expected str, got ['fast']."),
        (
            "name: a\nmode: fast\n  limit: 3\n",
            "not valid YAML (mapping values are not allowed here at line 3, column 8).",
        ),
        ("- name\n", "expected a mapping of field names to values."),
    ],
)
def test_yaml_values_of_the_wrong_kind_name_the_file_and_field(tmp_path, text, message):
    file = tmp_path / "kinds.yaml"
    file.write_text(text)
    with pytest.raises(ValueError) as caught:
        parse_kinds(config=str(file))
    assert str(caught.value) == f"--config {file}: {message}"


def test_help_shows_choices_required_and_defaults(capsys):
    parser = argparse.ArgumentParser()
    add_config_flags(parser, Kinds)
    helps = {action.option_strings[0]: action.help for action in parser._actions if action.option_strings}
    assert helps["--name"] == "A name. (required)"
    assert helps["--mode"] == "How. (choices: fast, slow; default: 'fast')"
    assert helps["--tags"] == "Tags. (choices: x, y, z; default: 'x')"
    assert helps["--limit"] == "At most this many (none: no limit). (default: None)"
