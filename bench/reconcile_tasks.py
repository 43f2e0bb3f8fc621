"""Workload 7: reconcile a SQLite table against the ledger's projection of it."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from adapters.sql import SqlAdapter, SqlCollection
from bench.data import COLLECTION, seed_values
from bench.raw import raw_collection
from ledger import DriftReport, compare_with_target, open_ledger

COLUMNS = ("email", "lifecycle_stage", "owner", "score")


def seed_target(target: str, n: int) -> dict[str, Any]:
    """The table the ledger's seed records describe, as the target system holds it (not timed)."""
    connection = sqlite3.connect(target)
    connection.execute(
        f"CREATE TABLE {COLLECTION} (id TEXT PRIMARY KEY, email TEXT, lifecycle_stage TEXT, "
        "owner TEXT, score INTEGER)"
    )
    connection.executemany(
        f"INSERT INTO {COLLECTION} VALUES (?, ?, ?, ?, ?)",
        ((f"{i:07d}", *(seed_values(i)[c] for c in COLUMNS)) for i in range(n)),
    )
    connection.commit()
    connection.close()
    return {"rows": n}


def ledger_reconcile(db: str, target: str) -> dict[str, Any]:
    """`compare_with_target` of the whole collection, both sides streamed in key order, to a
    report."""
    ledger = open_ledger(db, create=False)
    adapter = SqlAdapter("crm", f"sqlite:///{target}", {COLLECTION: SqlCollection(COLLECTION)})
    started = time.perf_counter()
    report = DriftReport.of(compare_with_target(ledger, adapter, COLLECTION))
    seconds = time.perf_counter() - started
    adapter.close()
    ledger.close()
    assert report.clean, report
    return {"count": report.target_records, "seconds": seconds}


def raw_reconcile(db: str, target: str, position: int) -> dict[str, Any]:
    """Reference: a raw streaming read of both sides (the ledger's rows, then the table)."""
    ledger_side = raw_collection(db, position)
    connection = sqlite3.connect(target)
    started = time.perf_counter()
    count = sum(1 for _ in connection.execute(f"SELECT * FROM {COLLECTION} ORDER BY id"))
    seconds = time.perf_counter() - started
    connection.close()
    assert count == ledger_side["count"]
    return {"count": count, "seconds": ledger_side["seconds"] + seconds}
