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


# Per-process thread locks of the records locked now (with how many threads hold or wait for
# each): an entry goes when its last user releases it, so the registry holds the records being
# worked on, not every record the process ever locked (a million-change rollback kept a
# million locks).
_thread_locks: dict[tuple[str, int], tuple[threading.Lock, list[int]]] = {}
_registry_lock = threading.Lock()


def _thread_lock(path: str, key: int) -> tuple[threading.Lock, list[int]]:
    with _registry_lock:
        entry = _thread_locks.setdefault((path, key), (threading.Lock(), [0]))
        entry[1][0] += 1
        return entry


def _release(path: str, key: int, entry: tuple[threading.Lock, list[int]]) -> None:
    entry[0].release()
    _unuse(path, key, entry)


def _unuse(path: str, key: int, entry: tuple[threading.Lock, list[int]]) -> None:
    with _registry_lock:
        entry[1][0] -= 1
        if not entry[1][0]:
            del _thread_locks[(path, key)]


@contextmanager
def file_record_locks(path: str | None, names: Sequence[str]) -> Iterator[None]:
    """Lock records of a SQLite ledger (``path`` None: an in-memory ledger, one process)."""
    keys = lock_keys(names)
    with ExitStack() as stack:
        for key in keys:
            entry = _thread_lock(path or ":memory:", key)
            try:
                entry[0].acquire()
            except BaseException:  # interrupted while waiting: no longer a user
                _unuse(path or ":memory:", key, entry)
                raise
            stack.callback(_release, path or ":memory:", key, entry)
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
