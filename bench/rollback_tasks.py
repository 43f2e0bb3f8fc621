"""Workload 6: plan and apply the rollback of a bad batch through the SQL table adapter.

The target is a SQLite `contacts` table (integer key). The ledger first records the table's
rows as created, then a bad batch is recorded and written to every row; the
rollback restores the rows' values from before that batch, one compensation per record.

The reference is a raw recorded restore: it reads the rows, restores them with one
`UPDATE … WHERE id = ?` `executemany`, and inserts the compensating event and index rows the
ledger recorded (exported after its run, in chunks, by a process of their own) into its own
copy of the ledger from before the rollback.
"""

from __future__ import annotations

import hashlib
import pickle
import sqlite3
import time
from typing import Any

from adapters.sql import SqlAdapter, SqlCollection
from bench.data import COLLECTION, SEED_BATCH, SYSTEM
from bench.raw import (
    EXPORT_CHUNK,
    INDEX,
    INDEX_COLUMNS,
    INSERT_INDEX,
    insert_events,
    load_chunks,
    sqlite_connect,
)
from ledger import Address, Change, RollbackScope, apply_rollback, open_ledger, plan_rollback

BAD_BATCH = "bad-batch"
WORKFLOW = "lead-sync"
SEED_CHUNK = 20_000
# The columns the bad batch changes, so the ones each compensation restores.
RESTORED = ("email", "stage", "score")
RESTORE_SQL = f"UPDATE {COLLECTION} SET email = ?, stage = ?, score = ? WHERE id = ?"


def target_values(i: int) -> dict[str, Any]:
    """Row ``i`` as the target held it before the bad batch."""
    return {
        "name": f"Contact {i}",
        "email": f"contact{i}@example.com",
        "stage": "lead",
        "score": i % 100,
    }


def bad_values(i: int) -> dict[str, Any]:
    """What the bad batch writes to row ``i``: every restored column differs from before."""
    return {"email": f"contact{i}@wrong.example", "stage": "customer", "score": 100 + i * 7 % 100}


def _address(i: int) -> Address:
    return Address(SYSTEM, COLLECTION, str(i))


def _adapter(target: str) -> SqlAdapter:
    return SqlAdapter(SYSTEM, f"sqlite:///{target}", {COLLECTION: SqlCollection(COLLECTION)})


def table_digest(target: str) -> str:
    """A digest of every row of the table, in key order (compared across tasks, untimed)."""
    digest = hashlib.sha256()
    connection = sqlite3.connect(target)
    for row in connection.execute(f"SELECT * FROM {COLLECTION} ORDER BY id"):
        digest.update(repr(row).encode())
    connection.close()
    return digest.hexdigest()


def seed_recorded_table(db: str, target: str, n: int) -> str:
    """The table of N rows and the ledger's record of them (created); the table's digest."""
    connection = sqlite3.connect(target)
    connection.execute(
        f"CREATE TABLE {COLLECTION} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, "
        "stage TEXT, score INTEGER)"
    )
    connection.executemany(
        f"INSERT INTO {COLLECTION} (id, name, email, stage, score) VALUES (?, ?, ?, ?, ?)",
        ((i, *target_values(i).values()) for i in range(n)),
    )
    connection.commit()
    connection.close()
    ledger = open_ledger(db)
    for start in range(0, n, SEED_CHUNK):
        ledger.record_all(
            [
                Change(_address(i), "create", values=target_values(i))
                for i in range(start, min(n, start + SEED_CHUNK))
            ],
            batch=SEED_BATCH,
        )
    ledger.close()
    return table_digest(target)


def seed_rollback(db: str, target: str, n: int) -> dict[str, Any]:
    """The table, the ledger's record of its N rows, then the bad batch: recorded as
    `record_all` records a batch (a chunk at a time, closed with the last), and written to the
    table with one raw `UPDATE` each. Running it through the adapter (`Run.apply`, row 6b's
    path) records the same update per row (its intents aside) and took 16 minutes at 1,000,000
    rows."""
    before = seed_recorded_table(db, target, n)
    ledger = open_ledger(db)
    for start in range(0, n, SEED_CHUNK):
        chunk = range(start, min(n, start + SEED_CHUNK))
        ledger.record_all(
            [Change(_address(i), "update", values=bad_values(i)) for i in chunk],
            batch=BAD_BATCH,
            workflow=WORKFLOW,
            close_batch=chunk.stop == n,
        )
    ledger.close()
    connection = sqlite3.connect(target)
    connection.executemany(
        f"UPDATE {COLLECTION} SET email = ?, stage = ?, score = ? WHERE id = ?",
        ((*bad_values(i).values(), i) for i in range(n)),
    )
    connection.commit()
    connection.close()
    assert table_digest(target) != before
    return {"digest": before}


def ledger_rollback(db: str, target: str, n: int) -> dict[str, Any]:
    """`plan` then `apply` of the bad batch's rollback; checked after the clock stops."""
    ledger = open_ledger(db, create=False)
    adapter = _adapter(target)
    adapters: dict[str, Any] = {SYSTEM: adapter}
    after = ledger.recorder.max_notification_id() or 0
    table = ledger.index.events_table_name
    started = time.perf_counter()
    rollback = plan_rollback(ledger, RollbackScope(batches=(BAD_BATCH,)), adapters)
    planned = time.perf_counter()
    report = apply_rollback(ledger, rollback, adapters)
    finished = time.perf_counter()
    recorded = ledger.index.batch_count(rollback.batch)
    adapter.close()
    ledger.close()
    assert report.counts == {"restored": n}, report.counts
    assert not report.mismatches, report.mismatches[:5]
    assert recorded == n, f"{recorded} compensations recorded, not {n}"
    return {
        "count": n,
        "seconds": finished - started,
        "plan_seconds": planned - started,
        "apply_seconds": finished - planned,
        "compensations": len(rollback.compensations),
        "recorded": recorded,
        "digest": table_digest(target),
        "after": after,
        "table": table,
    }


def export_rollback(db: str, table: str, after: int, path: str) -> dict[str, Any]:
    """The compensating actions the rollback recorded after log position ``after``: their event
    rows and index rows, saved in chunks for the reference; not timed. The rollback's intents
    and its batch's events are the ledger's own protocol, not part of the restore."""
    counts = {"events": 0, "index_rows": 0}
    connection = sqlite3.connect(db)
    with open(path, "wb") as file:
        for kind, statement in (
            (
                "events",
                f"SELECT e.rowid, e.originator_id, e.originator_version, e.topic, e.state "
                f"FROM {table} e JOIN {INDEX} a ON a.position = e.rowid "
                "WHERE a.position > ? ORDER BY e.rowid",
            ),
            ("index", f"SELECT {INDEX_COLUMNS} FROM {INDEX} WHERE position > ? ORDER BY position"),
        ):
            cursor = connection.execute(statement, (after,))
            while rows := cursor.fetchmany(EXPORT_CHUNK):
                pickle.dump((kind, rows), file)
                counts["events" if kind == "events" else "index_rows"] += len(rows)
    connection.close()
    return counts


def raw_rollback(target: str, db: str, table: str, rows: str, n: int) -> dict[str, Any]:
    """Reference: a raw recorded restore. A streaming read of the rows, one `executemany` of
    `UPDATE … WHERE id = ?` in one transaction, then the exported event and index rows inserted
    into a copy of the ledger from before the rollback, one transaction (loading each chunk is
    not timed).

    The target is connected as the adapter's engine connects (autocommit driver, busy_timeout,
    the target's default journal mode and synchronous setting) and begun as it begins a write
    (IMMEDIATE); the ledger as the ledger's pool connects (WAL, synchronous=FULL)."""
    restore = [(*(target_values(i)[c] for c in RESTORED), i) for i in range(n)]
    connection = sqlite3.connect(target, isolation_level=None)
    connection.execute("PRAGMA busy_timeout = 30000")
    ledger = sqlite_connect(db)
    statements = {"events": insert_events(table), "index": INSERT_INDEX}
    inserted = {"events": 0, "index": 0}
    chunks = load_chunks(rows)
    started = time.perf_counter()
    read = sum(1 for _ in connection.execute(f"SELECT id, {', '.join(RESTORED)} FROM {COLLECTION}"))
    connection.execute("BEGIN IMMEDIATE")
    updated = connection.executemany(RESTORE_SQL, restore).rowcount
    connection.execute("COMMIT")
    ledger.execute("BEGIN")
    seconds = time.perf_counter() - started
    for kind, chunk in chunks:  # each chunk is loaded off the clock
        started = time.perf_counter()
        inserted[kind] += ledger.executemany(statements[kind], chunk).rowcount
        seconds += time.perf_counter() - started
    started = time.perf_counter()
    ledger.execute("COMMIT")
    seconds += time.perf_counter() - started
    connection.close()
    ledger.close()
    assert read == updated == n, f"{read} rows read and {updated} updated, not {n}"
    assert inserted["index"] == inserted["events"] == n, f"{inserted} rows inserted, not {n}"
    return {"count": n, "seconds": seconds, "digest": table_digest(target)}
