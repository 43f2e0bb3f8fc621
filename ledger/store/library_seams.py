"""Every place the ledger leans on the eventsourcing library's internals, and only here.

The library is pinned exactly (pyproject.toml) because these functions mirror or reach into
its private steps. `tests/unit/test_library_seams.py` hashes the source of each library function
named below and fails, naming it and what to re-check here, when an upgrade changes one:

- `save_aggregates` runs `Application.save`'s steps without its two runtime-protocol checks
  per object (a tenth of a large batch or rollback);
- `ledger_environment` is `Application.construct_env` without ``os.environ``;
- `project_aggregates` is `Repository._reconstruct_aggregate` for many aggregates at once;
- `fields_decoder` reads fields of a stored event as `Mapper.to_domain_event` would;
- `use_pool` and `reopen_with_statement_cache` give the SQLite datastore durable
  connections with a real statement cache;
- `insert_numbered` is `SQLiteApplicationRecorder._insert_events` in two statements;
- `copy_insert` is the PostgreSQL recorder's insert (its table lock, notification, ids) done
  by binary COPY, in a transaction of the ledger's own (`PostgresLedgerRecorder.insert_events`
  replaces the library's, which runs in pipeline mode and cannot COPY).

The recorders' hooks that call these (`_insert_events`, `_create_connection`,
`insert_events`) are overridden in `ledger.store.sqlite` and `ledger.store.postgres`, and the
library functions they replace are hashed by the same test. Three seams must live elsewhere:
`ledger/_library.py` imports the library without ``TZINFO_TOPIC``, before anything else is, and
holds `trigger_built` and `init_built` (`BaseAggregate.trigger_event` and
`CanInitAggregate.mutate` for the domain, which cannot import this module).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper, ProgrammingError, Recording, StoredEvent
from eventsourcing.utils import Environment, EnvType

from ledger.store.pg_copy import copy_binary, event_rows
from ledger.store.saving import CONTEXT, SaveContext

if TYPE_CHECKING:  # types only: psycopg is imported when a PostgreSQL store is opened
    from eventsourcing.postgres import PostgresApplicationRecorder
    from eventsourcing.sqlite import (
        SQLiteApplicationRecorder,
        SQLiteConnection,
        SQLiteConnectionPool,
        SQLiteCursor,
        SQLiteDatastore,
    )
    from psycopg import Cursor
    from psycopg.rows import DictRow

FieldsDecoder = Callable[[bytes, tuple[str, ...]], tuple[Any, ...]]


def ledger_environment(app: type[Application[Any]], name: str, env: EnvType | None) -> Environment:
    """`Application.construct_env` without ``os.environ``: the settings given and nothing
    else (a stray ``LEDGER_SQLITE_DBNAME`` would redirect the store, and
    ``POSTGRES_ENABLE_DB_FUNCTIONS`` store events without their index rows)."""
    settings = dict(app.env)
    if app.is_snapshotting_enabled or app.snapshotting_intervals:
        settings["IS_SNAPSHOTTING_ENABLED"] = "y"
    settings.update(env or {})
    return Environment(name, settings)


def save_aggregates(
    app: Application[UUID], objs: Sequence[Any], context: SaveContext | None
) -> list[Recording[UUID]]:
    """`Application.save`, by its own steps, with ``context`` the one keyword argument its
    recorder receives. The library tells events from aggregates by checking every object
    against two runtime protocols (about 12 µs an object on Python 3.11); when every object
    is an `Aggregate`, their events are collected directly."""
    saved = {} if context is None else {CONTEXT: context}
    if not all(obj is None or isinstance(obj, Aggregate) for obj in objs):
        return Application.save(app, *objs, **saved)
    processing: ProcessingEvent[UUID] = ProcessingEvent()
    for obj in objs:
        if obj is not None:
            processing.events.extend(obj.collect_events())
            processing.aggregates[obj.id] = obj
    processing.saved_kwargs.update(saved)
    recordings = app._record(processing)
    app._take_snapshots(processing)
    app._notify(recordings)
    app.notify(processing.events)  # deprecated in the library, still called by save()
    return recordings


def project_aggregates(
    mapper: Mapper[UUID],
    ids: Sequence[UUID],
    snapshots: Mapping[UUID, StoredEvent],
    events: Mapping[UUID, Sequence[StoredEvent]],
) -> dict[UUID, Any]:
    """Each aggregate from its latest snapshot (if any) and its events after it, as the
    repository's `_reconstruct_aggregate` and `project_aggregate` rebuild one; None for an
    aggregate with neither."""
    loaded: dict[UUID, Any] = {}
    for aggregate_id in ids:
        aggregate: Any = None
        if aggregate_id in snapshots:
            aggregate = mapper.to_domain_event(snapshots[aggregate_id]).mutate(None)  # type: ignore[attr-defined]
        for stored in events.get(aggregate_id, ()):
            if aggregate is None or stored.originator_version > aggregate.version:
                aggregate = mapper.to_domain_event(stored).mutate(aggregate)  # type: ignore[attr-defined]
        loaded[aggregate_id] = aggregate
    return loaded


def fields_decoder(mapper: Mapper[UUID]) -> FieldsDecoder | None:
    """A function reading some fields of a stored event's state, decoded exactly as
    `Mapper.to_domain_event` would decode them, when the mapper does nothing to the state but
    transcode it (no cipher, no compressor) and its transcoder can (``decode_fields``)."""
    if mapper.cipher is not None or mapper.compressor is not None:
        return None
    decode: FieldsDecoder | None = getattr(mapper.transcoder, "decode_fields", None)
    return decode


def use_pool(datastore: SQLiteDatastore, pool: SQLiteConnectionPool) -> None:
    """Replace the pool the library's SQLite datastore opened (closing it) with ``pool``."""
    datastore.pool.close()
    datastore.pool = pool


def reopen_with_statement_cache(
    connection: SQLiteConnection, db_name: str, timeout: float, size: int
) -> sqlite3.Connection:
    """Reopen a connection the library's pool made, with a real statement cache. The library
    opens its connections with ``cached_statements=True``, a cache of one: each transaction's
    BEGIN evicts the statement before it, so every query and insert was compiled again. Its
    connect has already switched the file to WAL, which is a property of the file."""
    opened = connection._sqlite_conn
    connection._sqlite_conn = sqlite3.connect(
        database=db_name,
        uri=True,
        check_same_thread=False,
        isolation_level=None,
        cached_statements=size,
        timeout=timeout,
    )
    connection._sqlite_conn.row_factory = opened.row_factory
    opened.close()
    return connection._sqlite_conn


def insert_numbered(
    recorder: SQLiteApplicationRecorder, cursor: SQLiteCursor, stored_events: Sequence[StoredEvent]
) -> list[int]:
    """`SQLiteApplicationRecorder._insert_events` in two statements: the library inserts event
    by event to read each one's rowid (its notification id) back. The first event is inserted
    as the library does, which takes SQLite's write lock first thing (waiting for it: a
    transaction that read first could not upgrade once another writer committed, and would
    fail at once with "database is locked"); once it is held no other writer can insert, and
    the table has no AUTOINCREMENT, so the rest get the rowids after it, given explicitly."""
    if not stored_events:
        return []
    rows = [
        (
            s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id,
            s.originator_version,
            s.topic,
            s.state,
        )
        for s in stored_events
    ]
    cursor.execute(recorder.insert_events_statement, rows[0])
    first = cursor.lastrowid
    positions = list(range(first, first + len(rows)))
    cursor.executemany(
        f"INSERT INTO {recorder.events_table_name} "
        "(rowid, originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?, ?)",
        [(position, *row) for position, row in zip(positions[1:], rows[1:], strict=True)],
    )
    return positions


def copy_insert(
    recorder: PostgresApplicationRecorder,
    curs: Cursor[DictRow],
    stored_events: Sequence[StoredEvent],
) -> list[int]:
    """`PostgresApplicationRecorder._insert_stored_events` (lock the table, notify, insert),
    the rows sent by binary COPY; returns their notification ids, ascending in event order.

    The library inserts with one INSERT whose one parameter is an array of every event, in
    pipeline mode (which cannot COPY); the server then executes the insert row by row, and
    from about 5 MB a statement never returned. Here the ids are drawn from the column's own
    sequence first, under the library's EXCLUSIVE table lock (every writer of the table takes
    it before drawing one, so the ids are consecutive and follow commit order, as the
    library's are), then the events are copied with them."""
    recorder._lock_table(curs)
    recorder._notify_channel(curs)
    count = len(stored_events)
    table = f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'
    curs.execute(
        "SELECT min(id) AS low, max(id) AS high FROM (SELECT nextval(pg_get_serial_sequence("
        "%s, 'notification_id')) AS id FROM generate_series(1, %s)) drawn",
        [table, count],
    )
    drawn = curs.fetchone()
    assert drawn is not None
    low, high = drawn["low"], drawn["high"]
    if high - low + 1 != count:
        raise ProgrammingError(
            f"drew {count} notification ids under the table lock, but they span {low}..{high}: "
            "another writer draws ids without the lock"
        )
    positions = list(range(low, high + 1))
    copy_binary(
        curs,
        f"COPY {table} (notification_id, originator_id, originator_version, topic, state) "
        "FROM STDIN (FORMAT BINARY)",
        event_rows(stored_events, positions),
    )
    return positions
