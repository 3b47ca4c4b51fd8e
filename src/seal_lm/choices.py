"""Checking a value against a registry of choices: the one place "Unknown X 'y'. Did you mean ...?" is written.

A registry is the dict or tuple, in the module that owns the concept, whose keys (or items) are the
names a user may give; the command line shows the same registry in ``--help``. Imports nothing from
the package, so every layer can use it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """``Unknown {name} 'value'. Did you mean 'x'? Available: a, b, c.`` (the hint only when a choice is close)."""
    names = [str(choice) for choice in choices]
    close = difflib.get_close_matches(str(value), names, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"Unknown {name} '{value}'.{hint} Available: {', '.join(names)}."


def check_choice(value: str, choices: Iterable[str], name: str, error: type[Exception] = ValueError) -> str:
    """``value`` if it is one of ``choices`` (a registry's keys or items), else ``error`` naming it and the close choices."""
    names = list(choices)
    if value not in names:
        raise error(unknown_choice(name, value, names))
    return value
