"""Config dataclasses as command-line flags: each field is a ``--flag`` whose help is its description.

Values come from, in increasing priority: the field defaults, a YAML file given with ``--config``,
and the flags typed on the command line. A field made with :func:`positional` is a positional
argument instead (``seal ledger show 3``; a ``tuple[str, ...]`` one takes one or more values:
``seal report RUN [RUN ...]``); fields a config class names in ``without_flags`` (a class attribute)
are not settable and keep their defaults.

Every value is checked here, before a command runs: its kind (``int``, ``float``, ``str``, ``bool``,
a comma-separated ``tuple[str, ...]``, any of them ``| None``), its choices (a ``Literal[...]`` type,
or the registry given to :func:`option`, shown in ``--help``) and whether a :func:`required` field
was given. Errors name the flag, and the ``--config`` file when the value came from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from seal_lm.choices import check_choice, unknown_choice


def option(default: Any, help: str, choices: Iterable[str] | None = None) -> Any:
    """A config field with a default and a description (shown by ``--help``).

    ``choices``: the registry (dict or tuple) the value, or each item of a comma-separated list, must come from.
    """
    metadata = {"help": help} | ({"choices": tuple(choices)} if choices is not None else {})
    return dataclasses.field(default=default, metadata=metadata)


def required(help: str) -> Any:
    """A text field the command cannot run without (empty until given)."""
    return dataclasses.field(default="", metadata={"help": help, "required": True})


def positional(help: str) -> Any:
    """A required positional argument of the command (its field default is None until parsed)."""
    return dataclasses.field(default=None, metadata={"help": help, "positional": True})


def optional_positional(default: Any, help: str) -> Any:
    """A positional argument the command may be given or not (``seal chat [QUESTION]``)."""
    return dataclasses.field(default=default, metadata={"help": help, "positional": True})


def field_choices(field: dataclasses.Field, kind: Any) -> tuple[str, ...] | None:
    """The values ``field`` (of type ``kind``) accepts, or None for any: its ``Literal`` type's, or its registry."""
    literal = _literal(_item_kind(kind))
    return typing.get_args(literal) if literal is not None else field.metadata.get("choices")


def settable_fields(config_class: type) -> list[dataclasses.Field]:
    """The fields of ``config_class`` that flags and ``--config`` may set."""
    hidden = getattr(config_class, "without_flags", ())
    return [field for field in dataclasses.fields(config_class) if field.name not in hidden]


def defaults(config: Any) -> dict[str, Any]:
    """Every field's default: what a run recorded before a field existed ran with (see ``RunDir.open``)."""
    return {
        field.name: field.default for field in dataclasses.fields(config) if field.default is not dataclasses.MISSING
    }


def add_config_flags(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One flag per field of ``config_class`` (``n_passages`` → ``--n-passages``), plus ``--config``."""
    parser.add_argument("--config", help="YAML file of field values (flags override it).")
    hints = typing.get_type_hints(config_class)
    for field in settable_fields(config_class):
        if field.metadata.get("positional"):
            optional = {"nargs": "?", "default": None} if field.default is not None else {}
            several = (
                {"nargs": "+"} if typing.get_origin(hints[field.name]) is tuple else {}
            )  # seal report RUN [RUN ...]
            parser.add_argument(
                field.name, help=field.metadata["help"], metavar=field.name.upper(), **optional, **several
            )
            continue
        choices = field_choices(field, hints[field.name])
        default_text = ",".join(field.default) if isinstance(field.default, tuple) else field.default
        notes = [f"choices: {', '.join(choices)}"] if choices else []
        notes.append("required" if _is_required(field) else f"default: {default_text!r}")
        help_text = f"{field.metadata.get('help', '')} ({'; '.join(notes)})"
        if hints[field.name] is bool:
            parser.add_argument(_flag(field), action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(hints[field.name]) is tuple:  # a list flag given twice adds to itself
            parser.add_argument(_flag(field), action="append", default=None, help=help_text, metavar=field.name.upper())
        else:
            parser.add_argument(_flag(field), default=None, help=help_text, metavar=field.name.upper())


def config_from_args(config_class: type, args: argparse.Namespace) -> Any:
    """Build the config from defaults, the ``--config`` YAML file and the given flags, every value checked."""
    hints = typing.get_type_hints(config_class)
    fields = {f.name: f for f in settable_fields(config_class)}
    values: dict[str, Any] = {}
    if args.config:
        for name, value in _read_config_file(Path(args.config), fields).items():
            try:
                values[name] = _convert(fields[name], value, hints[name])
            except ValueError as err:
                raise ValueError(f"--config {args.config}: {err}") from None
    given = {name: value for name, value in vars(args).items() if name in fields and value is not None}
    given = {
        name: ",".join(value) if isinstance(value, list) and not fields[name].metadata.get("positional") else value
        for name, value in given.items()
    }
    values.update({name: _convert(fields[name], value, hints[name]) for name, value in given.items()})
    for name, field in fields.items():
        if _is_required(field) and values.get(name) in (None, ""):
            raise ValueError(f"{_flag(field)} is required: {field.metadata['help']}")
    return config_class(**values)


def _read_config_file(path: Path, fields: dict[str, dataclasses.Field]) -> dict[str, Any]:
    """The field values of a YAML file (``n-passages`` or ``n_passages`` keys), checked to name settable fields."""
    if not path.is_file():
        raise ValueError(f"--config {path}: no such file.")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"--config {path}: not valid YAML ({problem}{where}).") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"--config {path}: expected a mapping of field names to values.")
    values = {str(key).replace("-", "_"): value for key, value in loaded.items()}
    for name in values:
        if name not in fields:
            raise ValueError(f"--config {path}: {unknown_choice('setting', name, sorted(fields))}")
    return values


def _is_required(field: dataclasses.Field) -> bool:
    """Made with :func:`required`, or without a default."""
    no_default = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    return bool(field.metadata.get("required")) or no_default


def _flag(field: dataclasses.Field) -> str:
    return field.name.upper() if field.metadata.get("positional") else "--" + field.name.replace("_", "-")


def _convert(field: dataclasses.Field, value: Any, kind: Any) -> Any:
    """``value`` (flag text or a YAML value) as a ``kind``, checked against the field's choices."""
    flag = _flag(field)
    if _optional_of(kind) is not None:
        if value is None:
            return None
        kind = _optional_of(kind)
    choices = field_choices(field, kind)
    if typing.get_origin(kind) is tuple:
        if isinstance(value, (list, tuple)):
            items = list(value)
        elif isinstance(value, str):
            items = value.split(",")
        else:
            raise ValueError(f"{flag}: expected a comma-separated list, got {value!r}.")
        converted = tuple(_scalar(flag, item, str).strip() for item in items if str(item).strip())
        for item in converted if choices else ():
            check_choice(item, choices, flag)
        return converted
    literal = _literal(kind)
    converted = _scalar(flag, value, type(typing.get_args(literal)[0]) if literal is not None else kind)
    return check_choice(converted, choices, flag) if choices else converted


def _scalar(flag: str, value: Any, kind: type) -> Any:
    """Flag text or a YAML scalar as ``kind`` (bool, int, float or str); a list, mapping or wrong kind is an error."""
    wrong = ValueError(f"{flag}: expected {kind.__name__}, got {value!r}.")
    if kind is bool:
        if isinstance(value, bool):
            return value
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if str(value).lower() not in words:
            raise wrong
        return words[str(value).lower()]
    accepted = {int: (int, str), float: (int, float, str), str: (str, int, float)}.get(kind, (str,))
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise wrong
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise wrong from None


def _optional_of(kind: Any) -> Any:
    """``X`` for ``X | None``, else None."""
    if typing.get_origin(kind) not in (typing.Union, types.UnionType):
        return None
    rest = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    return rest[0] if len(rest) == 1 else None


def _item_kind(kind: Any) -> Any:
    """What one value is: ``X`` for ``X | None`` and for ``tuple[X, ...]``, else ``kind``."""
    kind = _optional_of(kind) or kind
    return typing.get_args(kind)[0] if typing.get_origin(kind) is tuple else kind


def _literal(kind: Any) -> Any:
    """``kind`` if it is a ``Literal[...]``, else None."""
    return kind if typing.get_origin(kind) is typing.Literal else None
