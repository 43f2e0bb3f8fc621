"""The Merkle tree stays whole under concurrent writers (separate processes, released together),
on SQLite and PostgreSQL: every event gets exactly one leaf, leaf indexes are gap-free in
notification-id order, and the ledger verifies. On PostgreSQL a save that rolls back has
consumed sequence values: positions then have a gap, leaf indexes do not."""

from __future__ import annotations

import multiprocessing
import sqlite3
from typing import Any

import psycopg
import pytest

from ledger import Address, Change, CheckpointExists, open_ledger
from ledger.evidence import verify

pytestmark = pytest.mark.slow

SPAWN = multiprocessing.get_context("spawn")
WRITERS = 2
RECORDS = 25


def _writer(db: str, worker: int, barrier: Any) -> None:
    ledger = open_ledger(db, create=False)
    barrier.wait(timeout=120)
    for i in range(RECORDS):  # one save each: the one-action-per-commit path
        ledger.record(
            Change(Address.parse(f"crm/contacts/{worker}-{i}"), "create", values={"i": i})
        )
    ledger.close()


def _rows(db: str, statement: str) -> list[tuple[Any, ...]]:
    if "://" in db:
        with psycopg.connect(db) as connection:
            return list(connection.execute(statement).fetchall())
    with sqlite3.connect(db) as connection:
        rows = list(connection.execute(statement).fetchall())
    connection.close()
    return rows


def test_two_processes_recording_at_once_leave_a_whole_tree(db_url: str) -> None:
    open_ledger(db_url).close()  # created (and its key) before the race
    barrier = SPAWN.Barrier(WRITERS)
    writers = [
        SPAWN.Process(target=_writer, args=(db_url, worker, barrier)) for worker in range(WRITERS)
    ]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=300)
    assert [process.exitcode for process in writers] == [0] * WRITERS

    ledger = open_ledger(db_url, create=False)
    ledger.checkpoint("after-race")
    with pytest.raises(CheckpointExists):
        ledger.checkpoint("after-race")  # rolled back: on PostgreSQL its sequence value is gone
    ledger.checkpoint("after-failure")
    report = verify(ledger)
    ledger.close()

    position = "notification_id" if "://" in db_url else "rowid"
    events = "ledger_events" if "://" in db_url else "stored_events"
    stored = [row[0] for row in _rows(db_url, f"SELECT {position} FROM {events} ORDER BY 1")]
    leaves = _rows(db_url, "SELECT leaf, position FROM ledger_leaves ORDER BY leaf")
    assert report.ok, report.first_break
    assert report.size == len(stored) >= WRITERS * RECORDS
    assert [leaf for leaf, _ in leaves] == list(range(len(stored)))
    assert [position for _, position in leaves] == stored
    if "://" in db_url:
        assert stored[-1] - stored[-2] == 2  # the failed checkpoint's id was never used
    else:
        assert stored == list(range(1, len(stored) + 1))  # SQLite rowids: no gaps
