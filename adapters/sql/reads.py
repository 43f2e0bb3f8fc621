"""Reading rows of a SQL table: by key (locked for a write on PostgreSQL) and in key-text order.

A row becomes (key text, record) by column position, because a scan of a million rows spends
its time there; JSON columns are read as the database holds them so that SQL NULL and the JSON
document null stay apart. A scan is ordered by the database where it can write the key text as
Python does (text and integer columns, compared by code point), else sorted on its way out
(`adapters.keysort`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from adapters.keysort import sorted_by_key
from adapters.sql.columns import document, exact_text, is_json, python_type
from adapters.sql.schema import OpenTable
from ledger.keys import join_key
from ledger.ports import Record

CHUNK = 500
"""Keys per ``WHERE key IN (…)`` query."""


@dataclass(frozen=True)
class Rows:
    """How one table's rows are read: the ``select`` of its columns and the function turning
    a row into (key text, record)."""

    opened: OpenTable
    select: sa.Select[Any]
    record: Callable[[Sequence[Any]], tuple[str, Record]]

    def read(self, connection: Connection, keys: Sequence[str], *, lock: bool) -> dict[str, Record]:
        """The rows of these keys that exist; with `lock`, read ``FOR UPDATE`` in key order on
        PostgreSQL (SQLite's write transaction already holds the database's write lock)."""
        rows: dict[str, Record] = {}
        ordered = sorted(set(keys))
        for start in range(0, len(ordered), CHUNK):
            query = self.select.where(self._where_keys(ordered[start : start + CHUNK]))
            if lock and not self.opened.sqlite:
                query = query.order_by(*self.opened.key_columns).with_for_update()
            for row in connection.execute(query):
                key, record = self.record(row)
                rows[key] = record
        return rows

    def scan(self, connect: Callable[[], Connection]) -> Iterator[tuple[str, Record]]:
        """Every row in key-text order (`ledger.keys`), streamed."""
        order = _key_text_order(self.opened)
        if order is None:
            return sorted_by_key(self._scan(connect, None))
        return self._scan(connect, order)

    def _scan(self, connect: Callable[[], Connection], order: Any) -> Iterator[tuple[str, Record]]:
        query = self.select if order is None else self.select.order_by(order)
        with connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=1000).execute(
                query
            )
            for row in result:
                yield self.record(row)

    def _where_keys(self, keys: Sequence[str]) -> Any:
        columns = self.opened.key_columns
        values = [self.opened.key_values(key) for key in keys]
        if len(columns) == 1:
            return columns[0].in_([value[0] for value in values])
        return sa.tuple_(*columns).in_(values)


def rows_of(opened: OpenTable) -> Rows:
    """The select of `opened`'s columns (JSON ones as the database holds them) and its reader."""
    table, keys = opened.table, opened.key
    names = [str(column.name) for column in table.c]  # plain str, not quoted_name
    select = sa.select(*(_as_read(column, opened.sqlite) for column in table.c))
    where = f"{opened.system}/{opened.collection}"
    at_key = [names.index(name) for name in keys]
    fields = [(index, name) for index, name in enumerate(names) if name not in keys]
    documents = [(i, name) for i, name in fields if is_json(table.c[name])]

    def read(row: Sequence[Any]) -> tuple[str, Record]:
        key = join_key([row[index] for index in at_key])
        record = {name: row[index] for index, name in fields}
        for index, name in documents:
            record[name] = document(row[index], f"{where}/{key}: field {name!r}")
        return key, record

    return Rows(opened, select, read)


def _as_read(column: sa.Column[Any], sqlite: bool) -> Any:
    """A column as `rows_of` reads it: JSON as the database holds it (PostgreSQL's driver
    would parse it, making SQL NULL and the document null one None), as text there;
    SQLite's value itself (its JSON columns have NUMERIC affinity: a number document is
    stored as a number, whose text would be rounded to 15 digits)."""
    if not is_json(column):
        return column
    if sqlite:
        return sa.type_coerce(column, sa.types.NullType()).label(column.name)
    return sa.cast(column, sa.Text).label(column.name)


def _key_text_order(opened: OpenTable) -> Any:
    """An SQL expression ordering rows by their key text exactly as Python compares it
    (byte order of UTF-8 is code point order: SQLite's BINARY, PostgreSQL's "C"), or
    None if a key column's text in SQL may differ from Python's ``str``."""
    collation = {"sqlite": "BINARY", "postgresql": "C"}.get(opened.dialect.name)
    if collation is None:
        return None  # a collation ordering by code point is not known here: sort
    columns = opened.key_columns
    if len(columns) == 1 and python_type(columns[0]) is str and exact_text(columns[0]):
        # Writing '%' as %25 keeps the order of one-part key texts: the column's order.
        return columns[0].collate(collation)
    if not all(exact_text(column) for column in columns):
        return None
    text: Any = None
    for column in columns:
        part: Any = sa.func.replace(sa.cast(column, sa.Text), "%", "%25")
        if len(columns) > 1:
            part = sa.func.replace(part, "/", "%2F")
        text = part if text is None else text.concat("/").concat(part)
    return text.collate(collation)
