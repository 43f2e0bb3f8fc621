"""SQLite store: the eventsourcing SQLite recorder plus the action index, durable to power loss.

Selected by ``PERSISTENCE_MODULE=ledger.store.sqlite:Factory``. The library opens every file
database in WAL mode; SQLite's WAL with ``synchronous=NORMAL`` may lose the last commits
on power loss, so every connection is set to ``synchronous=FULL``: a recorded action
has been fsynced to the WAL before ``record()`` returns.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteFactory,
)
from eventsourcing.utils import Environment, EnvType

from ledger.store.indexed import IndexedRecorder
from ledger.store.keyfile import SIGNING_KEY, SigningKeyFile
from ledger.store.library_seams import insert_numbered, reopen_with_statement_cache, use_pool
from ledger.store.locks import file_record_locks
from ledger.store.rows import HEAD_TABLE, INDEX_TABLE, LEAF_TABLE, PENDING_TABLE, TREE_TABLE
from ledger.store.saving import context_of
from ledger.store.tree import TreeRecorder, TreeSnapshot

SYNCHRONOUS = "FULL"
STATEMENT_CACHE = 128  # the sqlite3 module's default


class DurableSQLiteConnectionPool(SQLiteConnectionPool):
    """The library's pool, with every connection fsyncing each commit."""

    def _create_connection(self) -> SQLiteConnection:
        # A new file is switched to WAL on first connect, which SQLite refuses at once
        # ("database is locked", no busy handler) while another process does the same.
        deadline = time.monotonic() + (self.lock_timeout or 5)
        while True:
            try:
                connection = super()._create_connection()
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        reopened = reopen_with_statement_cache(
            connection,
            self.db_name,
            self.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT,
            STATEMENT_CACHE,
        )
        reopened.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
        return connection


class HoldingSQLiteDatastore(SQLiteDatastore):
    """The library's datastore, able to hold one write transaction for a thread: while it is
    held, every transaction that thread asks for (the library's reads and inserts, the
    ledger's own) runs inside it, and only the held one commits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held = threading.local()

    @property
    def held(self) -> SQLiteCursor | None:
        return getattr(self._held, "cursor", None)

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[SQLiteCursor]:
        held = self.held
        if held is not None:
            # A cursor of its own on the held transaction's connection: callers set its row
            # factory and close it.
            with SQLiteCursor(held.sqlite_cursor.connection.cursor()) as inner:
                yield SQLiteCursor(inner)
            return
        with super().transaction(commit=commit) as cursor:
            yield cursor

    @contextmanager
    def hold(self, first_write: str) -> Iterator[None]:
        """Hold a write transaction; ``first_write`` takes SQLite's write lock (waiting for it)
        before anything is read: a deferred transaction that read first could not upgrade
        under another writer."""
        if self.held is not None:  # held already: the outer holder commits
            yield
            return
        with super().transaction(commit=True) as cursor:
            cursor.execute(first_write)
            self._held.cursor = cursor
            try:
                yield
            finally:
                self._held.cursor = None


class SQLiteLedgerRecorder(IndexedRecorder, TreeRecorder, SQLiteApplicationRecorder):
    """Stores events as the library does and, in the same transaction, their index rows and
    their leaves with the tree's new signed head."""

    placeholder = "?"
    holds_transactions = True

    def held_transaction(self) -> AbstractContextManager[None]:
        return cast(HoldingSQLiteDatastore, self.datastore).hold(
            f"UPDATE {TREE_TABLE} SET size = size WHERE id = 1"
        )

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {INDEX_TABLE} ("
            "position INTEGER PRIMARY KEY, entity_id TEXT NOT NULL, version INTEGER NOT NULL, "
            "system TEXT NOT NULL, collection TEXT NOT NULL, key TEXT NOT NULL, "
            "operation TEXT NOT NULL, batch TEXT NOT NULL, workflow TEXT, "
            "recorded_at INTEGER NOT NULL, effective_at INTEGER, "
            "fingerprint TEXT NOT NULL UNIQUE)",
            f"CREATE UNIQUE INDEX IF NOT EXISTS {INDEX_TABLE}_entity "
            f"ON {INDEX_TABLE} (entity_id, version)",
            f"CREATE INDEX IF NOT EXISTS {INDEX_TABLE}_collection "
            f"ON {INDEX_TABLE} (system, collection, key, version)",
            f"CREATE INDEX IF NOT EXISTS {INDEX_TABLE}_batch ON {INDEX_TABLE} (batch)",
            f"CREATE INDEX IF NOT EXISTS {INDEX_TABLE}_time "
            f"ON {INDEX_TABLE} (entity_id, recorded_at)",
            f"CREATE TABLE IF NOT EXISTS {PENDING_TABLE} (fingerprint TEXT PRIMARY KEY, "
            "batch TEXT NOT NULL, system TEXT NOT NULL, collection TEXT NOT NULL, "
            "key TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {LEAF_TABLE} (leaf INTEGER PRIMARY KEY, "
            "position INTEGER NOT NULL, hash BLOB NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {TREE_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), "
            "size INTEGER NOT NULL, frontier BLOB NOT NULL, root BLOB, signed_at INTEGER, "
            "key_id TEXT, signature BLOB)",
            f"CREATE TABLE IF NOT EXISTS {HEAD_TABLE} (size INTEGER PRIMARY KEY, "
            "root BLOB NOT NULL, signed_at INTEGER NOT NULL, key_id TEXT NOT NULL, "
            "signature BLOB NOT NULL)",
        ]

    def _create_table(self, c: SQLiteCursor) -> None:
        # In the tables' own write transaction: a ledger stored before the tree existed gets
        # its leaves back-filled here, once.
        super()._create_table(c)
        self.tree_state(c)

    def insert_events(self, stored_events: Sequence[Any], **kwargs: Any) -> Sequence[int] | None:
        if stored_events:
            self.ready_to_sign()  # no key, or another ledger's: refused before the transaction
        return super().insert_events(stored_events, **kwargs)

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[Any], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = insert_numbered(self, c, stored_events)
        self.write_derived_rows(c, stored_events, positions, context_of(kwargs))
        self.append_leaves(c, stored_events, positions)
        return positions

    def lock_records(self, names: Sequence[str]) -> AbstractContextManager[None]:
        name = self.datastore.pool.db_name
        in_memory = ":memory:" in name or "mode=memory" in name
        return file_record_locks(None if in_memory else name, names)

    def _rows(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as c:
            # A cursor of its own (the transaction's may be a held one others read rows of),
            # giving plain tuples, not the library's sqlite3.Row objects.
            cursor = c.sqlite_cursor.connection.cursor()
            cursor.row_factory = None
            try:
                return cursor.execute(statement, list(params)).fetchall()
            finally:
                cursor.close()

    @contextmanager
    def _stream(self, statement: str, params: Sequence[Any]) -> Iterator[Iterator[Any]]:
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor.connection.cursor()  # of its own, as in `_rows`
            cursor.row_factory = None
            try:
                yield cursor.execute(statement, list(params))
            finally:
                cursor.close()

    def _qualified(self, table: str) -> str:
        return table

    def _lock_events(self, cursor: Any) -> None:
        """Nothing to do: a SQLite write transaction already excludes every other writer."""

    @contextmanager
    def tree_transaction(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=True) as c:
            # A write first, so the transaction takes the write lock (waiting for it) before it
            # reads: a deferred transaction that read first could not upgrade under a writer.
            c.execute(f"UPDATE {TREE_TABLE} SET size = size WHERE id = 1")
            yield c

    @contextmanager
    def tree_snapshot(self) -> Iterator[TreeSnapshot]:
        # One read transaction: in WAL mode it sees the database as of its first read.
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None

            def query(statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
                cursor.execute(statement, list(params))
                return cursor.fetchall()

            def stream(statement: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
                # A cursor of its own, read lazily, in the same read transaction.
                rows = cursor.connection.cursor()
                rows.row_factory = None
                return rows.execute(statement, list(params))

            yield TreeSnapshot(self, query, stream)

    def _db_id(self, entity_id: UUID) -> Any:
        return entity_id.hex

    def _uuid(self, value: Any) -> UUID:
        return UUID(value)


class Factory(SQLiteFactory):
    """The library's SQLite factory, with the ledger's recorder and durable connections."""

    application_recorder_class = SQLiteLedgerRecorder

    def application_recorder(self) -> ApplicationRecorder:
        recorder = super().application_recorder()
        if isinstance(recorder, TreeRecorder):
            path = self.env.get(SIGNING_KEY)
            recorder.signing_key = SigningKeyFile(Path(path) if path else None)
        return recorder

    def __init__(self, env: Environment | EnvType | None):
        super().__init__(env)
        opened = self.datastore
        self.datastore = HoldingSQLiteDatastore(
            db_name=opened.pool.db_name,
            lock_timeout=opened.pool.lock_timeout,
            single_row_tracking=opened.single_row_tracking,
            originator_id_type=opened.originator_id_type,
        )
        opened.close()
        pool = self.datastore.pool
        use_pool(
            self.datastore,
            DurableSQLiteConnectionPool(db_name=pool.db_name, lock_timeout=pool.lock_timeout),
        )
