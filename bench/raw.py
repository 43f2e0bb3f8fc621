"""The raw-driver references: the same rows written or read with sqlite3 / psycopg alone.

The rows of workloads 1, 3 and 8a are exported, untimed, from the database the ledger just
wrote (`export_rows`), so each reference stores byte-identical event and index rows into
its own copy of the same seeded database, with the same schema, indexes and durability.
Workload 9 writes a row per record of a million-row table, so its rows are exported and
loaded in chunks (`export_chunks`, `load_chunks`): neither process holds them all at once.
"""

from __future__ import annotations

import pickle
import sqlite3
import time
from collections.abc import Iterator
from typing import Any, Literal

from bench.data import COLLECTION, SYSTEM

INDEX_COLUMNS = (
    "position, entity_id, version, system, collection, key, operation, batch, workflow, "
    "recorded_at, effective_at, fingerprint"
)
EVENTS = "stored_events"
INDEX = "ledger_actions"
INSERT_INDEX = f"INSERT INTO {INDEX} ({INDEX_COLUMNS}) VALUES ({', '.join('?' * 12)})"
EXPORT_CHUNK = 10_000
_EVENTS_SQL = (
    "SELECT {id}, originator_id, originator_version, topic, state FROM {table} "
    "WHERE {id} > {p} ORDER BY {id}"
)
_INDEX_SQL = f"SELECT {INDEX_COLUMNS} FROM {INDEX} WHERE position > {{p}} ORDER BY position"


def insert_events(table: str) -> str:
    return (
        f"INSERT INTO {table} (rowid, originator_id, originator_version, topic, state) "
        "VALUES (?, ?, ?, ?, ?)"
    )


def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def sqlite_connect(db: str) -> sqlite3.Connection:
    """As the ledger's pool connects: autocommit driver, WAL (already set), synchronous=FULL."""
    connection = sqlite3.connect(db, isolation_level=None)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.execute("PRAGMA synchronous=FULL")
    return connection


def export_rows(db: str, table: str, after: int, path: str) -> dict[str, Any]:
    """Save the event and index rows written after log position ``after``; untimed."""
    if is_postgres(db):
        import psycopg

        with psycopg.connect(db) as postgres:
            events = postgres.execute(
                _EVENTS_SQL.format(table=table, id="notification_id", p="%s"), (after,)
            ).fetchall()
            index = postgres.execute(_INDEX_SQL.format(p="%s"), (after,)).fetchall()
    else:
        with sqlite3.connect(db) as connection:
            events = connection.execute(
                _EVENTS_SQL.format(table=table, id="rowid", p="?"), (after,)
            ).fetchall()
            index = connection.execute(_INDEX_SQL.format(p="?"), (after,)).fetchall()
        connection.close()
    with open(path, "wb") as file:
        pickle.dump({"table": table, "events": events, "index": index}, file)
    state_bytes = sum(len(row[4]) for row in events)
    return {"events": len(events), "index_rows": len(index), "state_bytes": state_bytes}


def export_chunks(db: str, table: str, after: int, path: str) -> dict[str, Any]:
    """`export_rows` for a SQLite ledger, streamed: chunks of event rows, then chunks of index
    rows, each its own pickle; untimed."""
    counts = {"events": 0, "index_rows": 0, "state_bytes": 0}
    connection = sqlite3.connect(db)
    with open(path, "wb") as file:
        for kind, statement in (
            ("events", _EVENTS_SQL.format(table=table, id="rowid", p="?")),
            ("index", _INDEX_SQL.format(p="?")),
        ):
            cursor = connection.execute(statement, (after,))
            while rows := cursor.fetchmany(EXPORT_CHUNK):
                pickle.dump((kind, rows), file)
                if kind == "events":
                    counts["events"] += len(rows)
                    counts["state_bytes"] += sum(len(row[4]) for row in rows)
                else:
                    counts["index_rows"] += len(rows)
    connection.close()
    return {"table": table, **counts}


def load_chunks(path: str) -> Iterator[tuple[Literal["events", "index"], list[Any]]]:
    """The chunks `export_chunks` wrote, read one at a time."""
    with open(path, "rb") as file:
        while True:
            try:
                yield pickle.load(file)
            except EOFError:
                return


def _load(path: str) -> tuple[str, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with open(path, "rb") as file:
        rows = pickle.load(file)
    return rows["table"], rows["events"], rows["index"]


def raw_batch(db: str, rows: str) -> dict[str, Any]:
    """Reference of workloads 1 and 8a: every row in one transaction, bulk-inserted."""
    table, events, index = _load(rows)
    if is_postgres(db):
        return _copy_postgres(db, table, events, index)
    connection = sqlite_connect(db)
    started = time.perf_counter()
    connection.execute("BEGIN")
    connection.executemany(insert_events(table), events)
    connection.executemany(INSERT_INDEX, index)
    connection.execute("COMMIT")
    seconds = time.perf_counter() - started
    connection.close()
    return {"count": len(index), "seconds": seconds, "events": len(events)}


def raw_batch_chunks(db: str, table: str, rows: str) -> dict[str, Any]:
    """Reference of workload 1: the rows `export_chunks` saved, in one transaction, one
    `executemany` per chunk; loading each chunk is not timed, so neither side holds them all."""
    statements = {"events": insert_events(table), "index": INSERT_INDEX}
    inserted = {"events": 0, "index": 0}
    connection = sqlite_connect(db)
    seconds = 0.0
    started = time.perf_counter()
    connection.execute("BEGIN")
    seconds += time.perf_counter() - started
    for kind, chunk in load_chunks(rows):  # each chunk is loaded off the clock
        started = time.perf_counter()
        inserted[kind] += connection.executemany(statements[kind], chunk).rowcount
        seconds += time.perf_counter() - started
    started = time.perf_counter()
    connection.execute("COMMIT")
    seconds += time.perf_counter() - started
    connection.close()
    return {"count": inserted["index"], "seconds": seconds, "events": inserted["events"]}


def raw_single(db: str, rows: str) -> dict[str, Any]:
    """Reference of workload 3: one transaction per event (with its index row), each fsynced."""
    table, events, index = _load(rows)
    by_position = {row[0]: row for row in index}
    insert_event = insert_events(table)
    connection = sqlite_connect(db)
    started = time.perf_counter()
    for event in events:
        connection.execute("BEGIN")
        connection.execute(insert_event, event)
        if event[0] in by_position:
            connection.execute(INSERT_INDEX, by_position[event[0]])
        connection.execute("COMMIT")
    seconds = time.perf_counter() - started
    connection.close()
    return {"count": len(index), "seconds": seconds, "events": len(events)}


def _copy_postgres(db: str, table: str, events: list[Any], index: list[Any]) -> dict[str, Any]:
    """COPY both tables in one transaction, under the lock the library's recorder takes."""
    import psycopg

    with psycopg.connect(db) as connection:
        started = time.perf_counter()
        with connection.transaction(), connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
            with cursor.copy(
                f"COPY {table} (notification_id, originator_id, originator_version, topic, "
                "state) FROM STDIN"
            ) as copy:
                for row in events:
                    copy.write_row(row)
            with cursor.copy(f"COPY {INDEX} ({INDEX_COLUMNS}) FROM STDIN") as copy:
                for row in index:
                    copy.write_row(row)
        seconds = time.perf_counter() - started
    return {"count": len(index), "seconds": seconds, "events": len(events)}


def raw_collection(db: str, position: int) -> dict[str, Any]:
    """Reference of workload 5: one SELECT of the rows `Ledger.collection` pages through."""
    statement = (
        f"SELECT a.key, a.entity_id, a.version, a.position, e.topic, e.state FROM {INDEX} a "
        f"JOIN {EVENTS} e ON e.originator_id = a.entity_id AND e.originator_version = a.version "
        "WHERE a.system = ? AND a.collection = ? AND a.position <= ? ORDER BY a.key, a.version"
    )
    connection = sqlite3.connect(db)
    started = time.perf_counter()
    count = size = 0
    for row in connection.execute(statement, (SYSTEM, COLLECTION, position)):
        count += 1
        size += len(row[5])
    seconds = time.perf_counter() - started
    connection.close()
    return {"count": count, "seconds": seconds, "state_bytes": size}
