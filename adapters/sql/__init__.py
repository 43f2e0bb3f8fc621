"""SQL table adapter: any SQLAlchemy URL, any table, single or composite key.

Opening the adapter reflects every configured table and refuses a declared key that is not
the table's primary key or a unique key of NOT NULL columns, and a SQLite file that does not
exist (`adapters.sql.schema`).

Compare-and-set holds a lock across read, compare and write: on SQLite every write chunk
runs in ``BEGIN IMMEDIATE`` (the database write lock is taken before the read), on PostgreSQL
the chunk's rows are read ``FOR UPDATE`` in key order (so two writers cannot deadlock).
Nothing can change a row between the compare and the write (`adapters.sql.writes`).

Every value is checked to fit its column exactly before anything of the chunk is sent
(`adapters.sql.columns`): a value that would be refused, rounded, truncated or read back as
something else is a ``failed`` result naming the field. Reads by key and scans in key-text
order are `adapters.sql.reads`.

This package is the adapter's public face: `SqlAdapter` and `SqlCollection`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from adapters.sql.columns import converted, python_type
from adapters.sql.reads import Rows, rows_of
from adapters.sql.schema import OpenTable, SqlCollection, open_engine, open_table, relations_of
from adapters.sql.writes import write_chunk
from ledger.errors import TransientError
from ledger.ports import Record, Relation, Write, WriteResult

__all__ = ["SqlAdapter", "SqlCollection"]


class SqlAdapter:
    """Reads and compare-and-set writes rows of SQL tables."""

    def __init__(
        self,
        system: str,
        url: str | Engine,
        collections: dict[str, SqlCollection],
    ):
        self.system = system
        self.engine = open_engine(system, url)
        self.sqlite = self.engine.dialect.name == "sqlite"
        self.routes = collections
        self._opened: dict[str, OpenTable] = {}
        self._rows: dict[str, Rows] = {}
        for collection in collections:
            self.table(collection)

    def table(self, collection: str) -> sa.Table:
        return self._open(collection).table

    def normalize(self, collection: str, values: Record) -> Record:
        """Lossless conversions to the columns' types: JSON has no float/int distinction, no
        Decimal and no dates, so changes arriving as JSON would otherwise not fit (or would
        read back as another type than the ledger recorded)."""
        table = self.table(collection)
        changed = {
            name: converted(python_type(table.c[name]), value) if name in table.c else value
            for name, value in values.items()
        }
        unchanged = all(changed[name] is value for name, value in values.items())
        return values if unchanged else changed

    def assigns_keys(self, collection: str) -> bool:
        return False  # a row is inserted with the key it is given

    def relations(self, collection: str) -> tuple[Relation, ...]:
        """The table's single-column foreign keys to the key of another configured collection."""
        return relations_of(self.table(collection), self.routes)

    def read(self, collection: str, keys: Sequence[str]) -> dict[str, Record | None]:
        found: dict[str, Record | None] = dict.fromkeys(keys)
        rows = self._rows_of(collection)
        with self._connect() as connection:
            found.update(rows.read(connection, keys, lock=False))
        return found

    def scan(self, collection: str) -> Iterator[tuple[str, Record]]:
        """In key-text order (`ledger.keys`): the database sorts by the key text itself when
        it can write it as Python does (text and integer columns), else the rows are sorted
        on their way out (`adapters.keysort`)."""
        return self._rows_of(collection).scan(self._connect)

    def write(self, collection: str, writes: Sequence[Write]) -> list[WriteResult]:
        rows = self._rows_of(collection)
        with (
            self._connect() as base,
            base.execution_options(ledger_write=True) as connection,
            connection.begin(),
        ):
            return write_chunk(connection, rows, writes)

    def close(self) -> None:
        self.engine.dispose()

    def _open(self, collection: str) -> OpenTable:
        if collection not in self._opened:
            self._opened[collection] = open_table(self.system, self.engine, self.routes, collection)
        return self._opened[collection]

    def _rows_of(self, collection: str) -> Rows:
        if collection not in self._rows:
            self._rows[collection] = rows_of(self._open(collection))
        return self._rows[collection]

    def _connect(self) -> Connection:
        try:
            return self.engine.connect()
        except sa.exc.OperationalError as error:
            reason = str(error.orig or error).strip().splitlines()[0]
            raise TransientError(f"{self.system}: cannot connect: {reason}") from error
