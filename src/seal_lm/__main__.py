"""The ``seal`` command (and ``python -m seal_lm``): :func:`seal_lm.cli.main`, ended cleanly on Ctrl-C.

Ctrl-C is answered from the first moment: while torch, transformers and peft import (seconds), and
while a command runs (``main`` says what was kept). After an interrupt the process ends at once with
status 130 instead of running the interpreter's shutdown, where native thread pools (torch's,
OpenMP's, tokenizers') still hold work the interrupt left half done; everything worth keeping is on
disk already (run records and ledger commits are written as they happen).
"""

from __future__ import annotations

import os
import sys

from seal_lm import INTERRUPTED


def run() -> None:
    """Parse ``sys.argv``, run the command, and exit with its status."""
    try:
        from seal_lm.cli import main
    except KeyboardInterrupt:
        print("\nseal: interrupted while starting; nothing was done.", file=sys.stderr)
        _exit_now(INTERRUPTED)
    code = main()
    if code == INTERRUPTED:
        _exit_now(code)
    sys.exit(code)


def _exit_now(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
