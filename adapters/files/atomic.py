"""Atomic replacement of a collection's file, under its lock.

A write holds an exclusive ``fcntl.flock`` on the sidecar ``<file>.lock`` across read, compare
and replace. It streams the old file into a hidden temporary file in the same directory
(``.<file>.<pid>.<random>.tmp``), applying the writes for each key as it passes (writes are
sorted by key, creates are inserted in order), then flushes, fsyncs, ``os.replace``-s it onto
the file and fsyncs the directory. So a bulk write is one rewrite, memory is bounded by the
number of writes (not the file), and a crash leaves either the old file or the new one, never
half of one. Reads only ever open the file itself, never a temporary file; a temporary file left
by a killed writer is removed by the next writer (under the lock). Readers take no lock:
``os.replace`` swaps the file whole. A call that applies nothing does not rewrite the file.
POSIX only (``fcntl``).
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of `path` (flock on the sidecar ``<file>.lock``, which is
    never deleted: deleting a lock file lets two writers lock different files)."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class Replacement:
    """A hidden temporary file next to `path` that replaces it on `commit`, else vanishes."""

    def __init__(self, path: Path):
        self.path = path
        self.temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        self.file: IO[bytes] = open(  # noqa: SIM115 - closed by commit or __exit__
            os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb"
        )
        self.committed = False

    def __enter__(self) -> Replacement:
        return self

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        with suppress(FileNotFoundError):  # a new file keeps the umask's mode
            os.fchmod(self.file.fileno(), stat.S_IMODE(os.stat(self.path).st_mode))
        self.file.close()
        os.replace(self.temp, self.path)
        self.committed = True
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def __exit__(self, *exc: object) -> None:
        self.file.close()
        if not self.committed:
            self.temp.unlink(missing_ok=True)


def remove_leftovers(path: Path) -> None:
    """Remove temporary files of writers that died (call only under the lock)."""
    leftover = re.compile(rf"\.{re.escape(path.name)}\.\d+\.[0-9a-f]{{8}}\.tmp")
    if not path.parent.is_dir():
        return
    for entry in os.scandir(path.parent):
        if leftover.fullmatch(entry.name):
            Path(entry.path).unlink(missing_ok=True)
