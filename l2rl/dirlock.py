"""One writer per experiment directory: ``run``, ``resume`` and sweeps hold its lock.

The lock is an advisory ``flock`` on ``<directory>/.lock``, so the operating system drops it
when the holder exits, however it exits (``kill -9`` included): a stale lock never blocks a
resume. The file records who holds it, for the message the second writer gets.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".lock"
"""The lock file inside an experiment directory."""


class DirectoryLockedError(RuntimeError):
    """Another process is writing to the experiment directory."""


@contextmanager
def experiment_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s lock for the duration of the block.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder, experiment_lock(Path(folder)):
    ...     (Path(folder) / ".lock").is_file()
    True

    Raises:
        DirectoryLockedError: another process holds it; the message names that process
            (pid, host, since when).
    """
    path = directory / LOCK_FILE
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise DirectoryLockedError(
                f"{directory} is in use by {_holder(handle.read())}; wait for it to finish "
                "(or stop it) before running or resuming this experiment"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": started}
        handle.write(json.dumps(holder) + "\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing the descriptor releases the lock


def _holder(text: str) -> str:
    """Who holds the lock, as its file says (written whole once the lock is held)."""
    try:
        holder = json.loads(text)
        return f"process {holder['pid']} on {holder['host']} (since {holder['since']})"
    except (json.JSONDecodeError, KeyError, TypeError):
        return "another process"
