"""Workload 6b: apply changes forward through the SQL table adapter, as `ledger apply` does.

The target is workload 6's SQLite `contacts` table (integer key), whose rows the ledger has
recorded as created (seeding, untimed). The ledger then applies N updates through the adapter
(`Run.apply`: gate, intents declared, compare-and-set writes, each action recorded and
settled). The reference does the same work by hand: read the N rows, `UPDATE` them, and
insert the very event + index rows the ledger wrote (exported after its run, untimed).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from adapters.sql import SqlAdapter, SqlCollection
from bench.data import COLLECTION, SYSTEM
from bench.raw import INSERT_INDEX, insert_events, load_chunks, sqlite_connect
from bench.rollback_tasks import bad_values, seed_recorded_table, table_digest
from ledger import Address, Change, open_ledger
from ledger.runs import Run, Target

BATCH = "forward-batch"
WORKFLOW = "lead-sync"
UPDATE_SQL = f"UPDATE {COLLECTION} SET email = ?, stage = ?, score = ? WHERE id = ?"


def _address(i: int) -> Address:
    return Address(SYSTEM, COLLECTION, str(i))


def seed_apply(db: str, target: str, n: int) -> dict[str, Any]:
    """The table of N rows and the ledger's record of them (created); not timed."""
    seed_recorded_table(db, target, n)
    return {}


def ledger_apply(db: str, target: str, n: int) -> dict[str, Any]:
    """`Run.apply_chunks` of N updates (made as they are read, as a file is streamed), keeping
    only the count of each chunk's outcomes; checked after it stops."""
    ledger = open_ledger(db, create=False)
    adapter = SqlAdapter(SYSTEM, f"sqlite:///{target}", {COLLECTION: SqlCollection(COLLECTION)})
    changes = (Change(_address(i), "update", values=bad_values(i)) for i in range(n))
    after = ledger.recorder.max_notification_id() or 0
    applied = 0
    started = time.perf_counter()
    with Run(ledger, BATCH, workflow=WORKFLOW) as run:
        for outcomes in run.apply_chunks(Target(adapter, COLLECTION), changes):
            applied += sum(1 for outcome in outcomes if outcome.status == "applied")
    seconds = time.perf_counter() - started
    table = ledger.index.events_table_name
    adapter.close()
    ledger.close()
    assert applied == n, run.counts
    return {
        "count": n,
        "seconds": seconds,
        "after": after,
        "table": table,
        "digest": table_digest(target),
    }


def raw_apply(db: str, target: str, table: str, rows: str, n: int) -> dict[str, Any]:
    """Reference: one streaming `SELECT` of the N rows, one `executemany` of
    `UPDATE … WHERE id = ?` in one `BEGIN IMMEDIATE` transaction (connected as the adapter
    connects), then the ledger's exported rows into a copy of its seeded ledger in one
    transaction, an `executemany` per chunk (loading each chunk is not timed)."""
    updates = [(*bad_values(i).values(), i) for i in range(n)]
    source = sqlite3.connect(target, isolation_level=None)
    source.execute("PRAGMA busy_timeout = 30000")
    started = time.perf_counter()
    read = sum(1 for _ in source.execute(f"SELECT * FROM {COLLECTION} WHERE id < ?", (n,)))
    read_seconds = time.perf_counter() - started
    started = time.perf_counter()
    source.execute("BEGIN IMMEDIATE")
    updated = source.executemany(UPDATE_SQL, updates).rowcount
    source.execute("COMMIT")
    update_seconds = time.perf_counter() - started
    source.close()
    statements = {"events": insert_events(table), "index": INSERT_INDEX}
    inserted = {"events": 0, "index": 0}
    connection = sqlite_connect(db)
    insert_seconds = 0.0
    started = time.perf_counter()
    connection.execute("BEGIN")
    insert_seconds += time.perf_counter() - started
    for kind, chunk in load_chunks(rows):  # each chunk is loaded off the clock
        started = time.perf_counter()
        inserted[kind] += connection.executemany(statements[kind], chunk).rowcount
        insert_seconds += time.perf_counter() - started
    started = time.perf_counter()
    connection.execute("COMMIT")
    insert_seconds += time.perf_counter() - started
    connection.close()
    assert read == updated == n, f"read {read}, updated {updated}, not {n}"
    return {
        "count": n,
        "seconds": read_seconds + update_seconds + insert_seconds,
        "read_seconds": read_seconds,
        "update_seconds": update_seconds,
        "insert_seconds": insert_seconds,
        "index_rows": inserted["index"],
        "digest": table_digest(target),
    }
