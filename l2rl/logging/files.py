"""Crash-safe file writing: whole files atomically, records append-and-flush."""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from l2rl.types import EvalRecord


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new, empty ``.<name>.<random>.tmp`` next to ``path``, opened for writing.

    Created with mode ``0o666`` so that the umask applies, as for any file ``open`` creates
    (``tempfile.mkstemp`` makes files ``0o600``, unreadable to colleagues on a shared
    machine once renamed into place).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to {path}")


_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")
"""The name :func:`_create_temporary` gives: ``.<name>.<12 hex digits>.tmp``."""


def remove_leftover_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary files that atomic writes killed midway left in ``directory``
    (not below it); the paths removed. Only safe while no one writes there (the
    experiment's lock is held)."""
    if not directory.is_dir():
        return []
    leftovers = [p for p in directory.iterdir() if p.is_file() and _TEMPORARY.match(p.name)]
    for path in leftovers:
        path.unlink()
    return leftovers


def _write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Give ``write`` a temporary file next to ``path``, fsync it, rename it into place:
    a reader (or a machine restarted after a power cut) sees the old file or the new one,
    never half of one."""
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old or the new file, never half.

    Writes a temporary file in the same folder (mode ``0o666`` less the umask, like any new
    file), fsyncs it, then ``os.replace``s it.
    """
    data = text.encode()
    _write_atomically(path, lambda handle: handle.write(data))


def atomic_write_json(path: Path, data: Any) -> None:
    """:func:`atomic_write_text` of ``data`` as indented JSON (NaN is not allowed)."""
    atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> None:
    """``torch.save`` through a temporary file, fsynced before ``os.replace`` (mode as for
    :func:`atomic_write_text`)."""
    import torch  # here: the CLI reads records without paying torch's import

    _write_atomically(path, lambda handle: torch.save(obj, handle))


class JsonlWriter:
    """Appends one JSON object per line and flushes each, so a crash loses at most one line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle: IO[str] = path.open("a")

    def write(self, row: dict[str, Any]) -> None:
        """Append ``row`` and flush it to the OS."""
        self._handle.write(json.dumps(row) + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


class CorruptRecordsError(ValueError):
    """A records file has a line that is not JSON before its last line (a truncated last
    line is what a crash mid-write leaves and is skipped; any other is damage)."""


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file; a truncated last line (a crash mid-write) is skipped.

    Raises:
        CorruptRecordsError: a line before the last is not valid JSON.
    """
    with path.open() as handle:
        lines = handle.readlines()
    for number, line in enumerate(lines):
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if number != len(lines) - 1:
                raise CorruptRecordsError(
                    f"{path}, line {number + 1}, is not valid JSON: the file is damaged "
                    "(fix or delete that line)"
                ) from None


def record_to_row(record: EvalRecord) -> dict[str, Any]:
    """An :class:`EvalRecord` as a JSON-ready dict."""
    return asdict(record)


def read_records(path: Path) -> list[EvalRecord]:
    """The evaluation records stored in a JSONL file."""
    return [EvalRecord.from_row(row) for row in read_jsonl(path)]
