"""PostgreSQL store: the eventsourcing PostgreSQL recorder plus the action index.

Selected by ``PERSISTENCE_MODULE=ledger.store.postgres:Factory``. The library takes an
EXCLUSIVE lock on the events table while inserting, so notification ids are issued in
commit order and a reader tailing the log never skips an event that commits later. The
ledger's insert keeps that lock and sends events, leaves and index rows by binary COPY
(`ledger.store.library_seams.copy_insert`, `ledger.store.pg_copy`); the leaves and index rows
are written after the events' ids are known, inside that same locked transaction, so the
guarantee covers them too: do not move them out of it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InterfaceError,
    OperationalError,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier

from ledger.store.indexed import INDEX_COLUMNS, IndexedRecorder
from ledger.store.keyfile import SIGNING_KEY, SigningKeyFile
from ledger.store.library_seams import copy_insert
from ledger.store.locks import advisory_record_locks
from ledger.store.pg_copy import copy_binary, index_rows, leaf_rows
from ledger.store.rows import HEAD_TABLE, INDEX_TABLE, LEAF_TABLE, PENDING_TABLE, TREE_TABLE
from ledger.store.saving import SaveContext, context_of
from ledger.store.tree import PAGE, TreeRecorder, TreeSnapshot

DDL_LOCK = 0x6C6564676572  # advisory lock key ("ledger") that serialises opening a ledger


class PostgresLedgerRecorder(IndexedRecorder, TreeRecorder, PostgresApplicationRecorder):
    """Stores events as the library does and, in the same transaction, their index rows and
    their leaves with the tree's new signed head."""

    placeholder = "%s"
    position_column = "notification_id"
    id_text = "replace(originator_id::text, '-', '')"

    @staticmethod
    def as_utf8(expression: str) -> str:
        return f"convert_to({expression}, 'UTF8')"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        table = f"{{schema}}.{INDEX_TABLE}"
        for statement in (
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "position bigint PRIMARY KEY, entity_id uuid NOT NULL, version bigint NOT NULL, "
            'system text COLLATE "C" NOT NULL, collection text COLLATE "C" NOT NULL, '
            'key text COLLATE "C" NOT NULL, operation text NOT NULL, batch text NOT NULL, '
            "workflow text, recorded_at bigint NOT NULL, effective_at bigint, "
            "fingerprint text NOT NULL UNIQUE)",
            f"CREATE UNIQUE INDEX IF NOT EXISTS {INDEX_TABLE}_entity "
            f"ON {table} (entity_id, version)",
            f"CREATE INDEX IF NOT EXISTS {INDEX_TABLE}_collection "
            f"ON {table} (system, collection, key, version)",
            f"CREATE INDEX IF NOT EXISTS {INDEX_TABLE}_batch ON {table} (batch)",
            f"CREATE INDEX IF NOT EXISTS {INDEX_TABLE}_time ON {table} (entity_id, recorded_at)",
            f"CREATE TABLE IF NOT EXISTS {{schema}}.{PENDING_TABLE} (fingerprint text PRIMARY KEY, "
            "batch text NOT NULL, system text NOT NULL, collection text NOT NULL, "
            "key text NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {{schema}}.{LEAF_TABLE} (leaf bigint PRIMARY KEY, "
            "position bigint NOT NULL, hash bytea NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {{schema}}.{TREE_TABLE} ("
            "id int PRIMARY KEY CHECK (id = 1), size bigint NOT NULL, frontier bytea NOT NULL, "
            "root bytea, signed_at bigint, key_id text, signature bytea)",
            f"CREATE TABLE IF NOT EXISTS {{schema}}.{HEAD_TABLE} (size bigint PRIMARY KEY, "
            "root bytea NOT NULL, signed_at bigint NOT NULL, key_id text NOT NULL, "
            "signature bytea NOT NULL)",
        ):
            self.sql_create_statements.append(
                SQL(statement).format(schema=Identifier(self.datastore.schema))
            )

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        # In the tables' own transaction (and the factory's DDL lock): a ledger stored before
        # the tree existed gets its leaves back-filled here, once, under the events' lock.
        super()._create_table(curs)
        self.tree_state(curs)

    def insert_events(self, stored_events: Sequence[Any], **kwargs: Any) -> Sequence[int] | None:
        context = context_of(kwargs)  # a save given a bad context fails before anything
        if not stored_events:
            return None
        self.ready_to_sign()  # no key, or another ledger's: refused before the transaction
        return self._insert_with_derived_rows(stored_events, context)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _insert_with_derived_rows(
        self, stored_events: Sequence[Any], context: SaveContext
    ) -> list[int]:
        # One transaction: any error rolls back events, leaves and index rows together. The
        # leaves and the tree's state row are written under the EXCLUSIVE lock `copy_insert`
        # takes, by one writer at a time, in notification-id order.
        with self.datastore.transaction(commit=True) as curs:
            positions = copy_insert(self, curs, stored_events)
            self.append_leaves(curs, stored_events, positions)
            self.write_derived_rows(curs, stored_events, positions, context)
        return positions

    def _insert_leaves(self, cursor: Any, rows: Sequence[tuple[int, int, bytes]]) -> None:
        copy_binary(
            cursor,
            f"COPY {self._qualified(LEAF_TABLE)} (leaf, position, hash) FROM STDIN (FORMAT BINARY)",
            leaf_rows(rows),
        )

    def _insert_index(self, cursor: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        copy_binary(
            cursor,
            f"COPY {self._qualified(INDEX_TABLE)} ({INDEX_COLUMNS}) FROM STDIN (FORMAT BINARY)",
            index_rows(rows),
        )

    @contextmanager
    def lock_records(self, names: Sequence[str]) -> Iterator[None]:
        # The library's connections are in autocommit mode, as session locks need.
        with (
            self.datastore.get_connection() as connection,
            advisory_record_locks(connection, names),
        ):
            yield

    def _rows(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with (
            self.datastore.transaction(commit=False) as curs,
            curs.connection.cursor(row_factory=tuple_row) as rows,
        ):
            # Plain tuples (no dict built per row), values sent in binary: an event's state
            # arrives as its bytes, not as hex text to unescape (a tenth of a bulk recording).
            rows.execute(statement, list(params), binary=True)
            return rows.fetchall()

    @contextmanager
    def _stream(self, statement: str, params: Sequence[Any]) -> Iterator[Iterator[Any]]:
        # A server-side cursor in a read transaction of its own: rows come a page at a time.
        with (
            self.datastore.get_connection() as connection,
            connection.transaction(force_rollback=True),
            connection.cursor(name="ledger_stream", row_factory=tuple_row) as rows,
        ):
            rows.itersize = PAGE
            rows.execute(statement, list(params))
            yield iter(rows)

    def _qualified(self, table: str) -> str:
        return f'"{self.datastore.schema}"."{table}"'

    def _lock_events(self, cursor: Any) -> None:
        self._lock_table(cursor)

    @contextmanager
    def tree_transaction(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=True) as curs:
            self._lock_table(curs)
            yield curs

    @contextmanager
    def tree_snapshot(self) -> Iterator[TreeSnapshot]:
        # REPEATABLE READ: every statement sees the snapshot taken by the first, so an event
        # committed meanwhile is not seen without its leaf (nor a leaf without its event).
        with (
            self.datastore.get_connection() as connection,
            connection.transaction(force_rollback=True),
        ):
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            with connection.cursor(row_factory=tuple_row) as cursor:

                def query(statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
                    cursor.execute(statement, list(params))
                    return cursor.fetchall()

                def stream(statement: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
                    # A server-side cursor, in the same REPEATABLE READ transaction.
                    with connection.cursor(
                        name="ledger_tree_stream", row_factory=tuple_row
                    ) as rows:
                        rows.itersize = PAGE
                        rows.execute(statement, list(params))
                        yield from rows

                yield TreeSnapshot(self, query, stream)

    def _db_id(self, entity_id: UUID) -> Any:
        return entity_id

    def _uuid(self, value: Any) -> UUID:
        return value if isinstance(value, UUID) else UUID(str(value))


class Factory(PostgresFactory):
    """The library's PostgreSQL factory, with the ledger's recorder."""

    application_recorder_class = PostgresLedgerRecorder

    # Creating a recorder runs the library's DDL (CREATE TYPE, CREATE TABLE IF NOT EXISTS,
    # CREATE OR REPLACE FUNCTION) on every open; run by two processes at once it fails with
    # "tuple concurrently updated" or a pg_type unique violation. One opener at a time.

    def application_recorder(self) -> ApplicationRecorder:
        with self._ddl_lock():
            recorder = super().application_recorder()
        if isinstance(recorder, TreeRecorder):
            path = self.env.get(SIGNING_KEY)
            recorder.signing_key = SigningKeyFile(Path(path) if path else None)
        return recorder

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        with self._ddl_lock():
            return super().aggregate_recorder(purpose)

    @contextmanager
    def _ddl_lock(self) -> Iterator[None]:
        with self.datastore.get_connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", [DDL_LOCK])
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [DDL_LOCK])
