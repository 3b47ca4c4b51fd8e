"""Config dataclasses as command-line flags: each field is a ``--flag`` whose help is its description.

Values come from, in increasing priority: the field defaults, a YAML file given with ``--config``,
and the flags typed on the command line. A field made with :func:`positional` is a positional
argument instead (``seal ledger show 3``); fields a config class names in ``without_flags`` (a
class attribute) are not settable and keep their defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml


def option(default: Any, help: str) -> Any:
    """A config field with a default and a description (shown by ``--help``)."""
    return dataclasses.field(default=default, metadata={"help": help})


def positional(help: str) -> Any:
    """A required positional argument of the command (its field default is None until parsed)."""
    return dataclasses.field(default=None, metadata={"help": help, "positional": True})


def optional_positional(default: Any, help: str) -> Any:
    """A positional argument the command may be given or not (``seal chat [QUESTION]``)."""
    return dataclasses.field(default=default, metadata={"help": help, "positional": True})


def settable_fields(config_class: type) -> list[dataclasses.Field]:
    """The fields of ``config_class`` that flags and ``--config`` may set."""
    hidden = getattr(config_class, "without_flags", ())
    return [field for field in dataclasses.fields(config_class) if field.name not in hidden]


def defaults(config: Any) -> dict[str, Any]:
    """Every field's default: what a run recorded before a field existed ran with (see ``RunDir.open``)."""
    return {field.name: field.default for field in dataclasses.fields(config) if field.default is not dataclasses.MISSING}


def add_config_flags(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One flag per field of ``config_class`` (``n_passages`` → ``--n-passages``), plus ``--config``."""
    parser.add_argument("--config", help="YAML file of field values (flags override it).")
    hints = typing.get_type_hints(config_class)
    for field in settable_fields(config_class):
        if field.metadata.get("positional"):
            optional = {"nargs": "?", "default": None} if field.default is not None else {}
            parser.add_argument(field.name, help=field.metadata["help"], metavar=field.name.upper(), **optional)
            continue
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        default_text = ",".join(field.default) if isinstance(field.default, tuple) else field.default
        help_text = f"{field.metadata.get('help', '')} (default: {default_text!r})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, default=None, help=help_text, metavar=field.name.upper())


def config_from_args(config_class: type, args: argparse.Namespace) -> Any:
    """Build the config from defaults, the ``--config`` YAML file and the given flags."""
    values: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise ValueError(f"--config {path}: no such file.")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"--config {path}: expected a mapping of field names to values.")
        values.update({key.replace("-", "_"): value for key, value in loaded.items()})
    values.update({key: value for key, value in vars(args).items() if value is not None})
    hints = typing.get_type_hints(config_class)
    fields = {f.name: f for f in settable_fields(config_class)}
    unknown = set(values) - set(fields) - {"config", "command", "domain"}
    if unknown:
        raise ValueError(f"Unknown setting(s) {', '.join(sorted(unknown))} in --config. Available: {', '.join(sorted(fields))}.")
    return config_class(**{name: _convert(field, values[name], hints[name]) for name, field in fields.items() if name in values})


def _convert(field: dataclasses.Field, value: Any, kind: Any) -> Any:
    flag = field.name.upper() if field.metadata.get("positional") else "--" + field.name.replace("_", "-")
    if typing.get_origin(kind) is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(item.strip() for item in items if str(item).strip())
    if kind is bool:
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{flag}: expected {kind.__name__}, got {value!r}.") from None
