"""Record locks: while a run reads, writes and settles a record in a target, no other run does.

A run's compare-and-set protects the *target* from a stale write, but the ledger and the target
are two stores: between a run's write and its settlement, another run reading the same record
would see a value the ledger does not know yet and take it for an outside edit (seen: two
`ledger apply` of one batch at once recorded some of the batch's own writes as `observed` edits
by `external`, and the batch's rollback then left them). So each chunk of a run locks its
records, in one global order (so two runs cannot deadlock), from the read of the target to the
settlement in the ledger. The locks belong to the process and die with it: a crashed run never
leaves a record locked.

- SQLite (one machine): POSIX byte-range locks on a side file next to the ledger, one byte per
  record (by hash), plus a per-process thread lock for each byte, because POSIX locks are held
  by a process and would not keep two threads of one process apart.
- PostgreSQL: session advisory locks on a dedicated connection, released when the chunk ends
  (or when the connection dies with its process).
A hash collision only makes two records wait for each other; it never lets two runs write one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, Final

LOCK_SUFFIX: Final = "-locks"
_SPAN: Final = 1 << 40  # byte offsets in the SQLite side file


def lock_keys(names: Sequence[str]) -> list[int]:
    """Signed 64-bit keys for the names, sorted and without repeats: the one lock order."""
    keys = {
        int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        for name in names
    }
    return sorted(keys)


_thread_locks: dict[tuple[str, int], threading.Lock] = {}
_registry_lock = threading.Lock()


def _thread_lock(path: str, key: int) -> threading.Lock:
    with _registry_lock:
        return _thread_locks.setdefault((path, key), threading.Lock())


@contextmanager
def file_record_locks(path: str | None, names: Sequence[str]) -> Iterator[None]:
    """Lock records of a SQLite ledger (``path`` None: an in-memory ledger, one process)."""
    keys = lock_keys(names)
    with ExitStack() as stack:
        for key in keys:
            lock = _thread_lock(path or ":memory:", key)
            lock.acquire()
            stack.callback(lock.release)
        if path is not None and keys:
            descriptor = os.open(path + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
            stack.callback(os.close, descriptor)  # closing drops every lock it holds
            for key in keys:
                fcntl.lockf(descriptor, fcntl.LOCK_EX, 1, key % _SPAN)
        yield


@contextmanager
def advisory_record_locks(connection: Any, names: Sequence[str]) -> Iterator[None]:
    """Lock records of a PostgreSQL ledger on ``connection`` (a psycopg connection in
    autocommit mode that nothing else uses meanwhile)."""
    keys = lock_keys(names)
    if not keys:
        yield
        return
    connection.execute("SELECT pg_advisory_lock(k) FROM unnest(%s::bigint[]) AS k", [keys])
    try:
        yield
    finally:
        connection.execute("SELECT pg_advisory_unlock_all()")
