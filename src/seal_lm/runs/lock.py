"""A writer lock: one process writes a folder; a second writer is refused, told which process holds it.

The lock is an exclusive ``flock`` on a file in the folder, held for as long as the returned file
object stays open and released by the OS when the process ends, however it ends (POSIX systems).
A lock belongs to one open file, so even a second open in the same process is refused.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TextIO


class LockHeld(RuntimeError):
    """Another open file holds the lock; ``holder`` is the pid its process wrote into the lock file."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is held by pid {holder}")
        self.holder = holder


def take_writer_lock(path: Path) -> TextIO:
    """Open ``path`` and hold an exclusive, non-blocking flock on it, with this pid written in it; close it to release."""
    lock = open(path, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise LockHeld(path, holder) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock
