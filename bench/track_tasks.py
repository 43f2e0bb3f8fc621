"""Workload 9: a baseline (`ledger track`) of a whole SQLite table into an empty SQLite ledger.

The table is workload 7's (`seed_target`), read through the SQL table adapter. The reference
reads the same table, streamed, then inserts the event and index rows the ledger wrote,
exported after its run in a process of their own (so the export weighs on neither side's
peak RSS) and loaded back in chunks, so that neither side holds the whole table.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from adapters.sql import SqlAdapter, SqlCollection
from bench.data import COLLECTION, SYSTEM
from bench.raw import INSERT_INDEX, export_chunks, insert_events, load_chunks, sqlite_connect
from ledger import open_ledger
from ledger.tracking import CHUNK, COMMIT_EVERY, track

BATCH = "baseline"


def empty_ledger(db: str) -> dict[str, Any]:
    """A new SQLite ledger holding nothing (its tables and indexes only); not timed."""
    open_ledger(db).close()
    return {}


def ledger_track(db: str, target: str, n: int) -> dict[str, Any]:
    """`track` of the whole table: every row recorded once, in chunks of `CHUNK` held in one
    write transaction per `COMMIT_EVERY` rows."""
    ledger = open_ledger(db, create=False)
    adapter = SqlAdapter(SYSTEM, f"sqlite:///{target}", {COLLECTION: SqlCollection(COLLECTION)})
    after = ledger.recorder.max_notification_id() or 0
    started = time.perf_counter()
    report = track(ledger, adapter, COLLECTION, batch=BATCH)
    seconds = time.perf_counter() - started
    table = ledger.index.events_table_name
    adapter.close()
    ledger.close()
    counts = (report.tracked, report.already_whole, report.drifted)
    assert counts == (n, 0, 0), f"tracked, already whole, drifted: {counts}, not ({n}, 0, 0)"
    return {"count": report.tracked, "seconds": seconds, "after": after, "table": table}


def export_track(db: str, table: str, after: int, path: str) -> dict[str, Any]:
    """The rows `ledger_track` wrote, saved in chunks for the reference; not timed."""
    return {**export_chunks(db, table, after, path), "chunk": CHUNK, "commit_every": COMMIT_EVERY}


def raw_track(db: str, target: str, table: str, rows: str) -> dict[str, Any]:
    """Reference: a streaming `SELECT` of the table in key order, then one transaction of
    `executemany` inserts of the exported rows (loading each chunk is not timed)."""
    source = sqlite3.connect(target)
    started = time.perf_counter()
    count = sum(1 for _ in source.execute(f"SELECT * FROM {COLLECTION} ORDER BY id"))
    read_seconds = time.perf_counter() - started
    source.close()
    statements = {"events": insert_events(table), "index": INSERT_INDEX}
    inserted = {"events": 0, "index": 0}
    connection = sqlite_connect(db)
    insert_seconds = 0.0
    chunks = load_chunks(rows)
    started = time.perf_counter()
    connection.execute("BEGIN")
    insert_seconds += time.perf_counter() - started
    for kind, chunk in chunks:  # each chunk is loaded off the clock
        started = time.perf_counter()
        inserted[kind] += connection.executemany(statements[kind], chunk).rowcount
        insert_seconds += time.perf_counter() - started
    started = time.perf_counter()
    connection.execute("COMMIT")
    insert_seconds += time.perf_counter() - started
    connection.close()
    assert inserted["index"] == count, f"{inserted['index']} index rows for {count} table rows"
    return {
        "count": count,
        "seconds": read_seconds + insert_seconds,
        "read_seconds": read_seconds,
        "insert_seconds": insert_seconds,
        "events": inserted["events"],
    }
