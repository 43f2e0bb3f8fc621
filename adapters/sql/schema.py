"""Opening a SQL system: the engine, each configured table, and its key checked against the schema.

A write names one record by its key, so a declared key that is not the table's primary key or
a unique key of NOT NULL columns is refused when the system is opened (a write by any other key
could change several rows), and so is a SQLite file that does not exist (SQLite would create it
empty, and every record would look missing). `OpenTable` is what reads and writes need to know
of one opened collection, including how its key text maps to the key columns' values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from adapters.sql.columns import from_text
from ledger.errors import AdapterError, ConfigurationError
from ledger.keys import join_key, split_key
from ledger.ports import Relation


@dataclass(frozen=True)
class SqlCollection:
    """A table and its key column(s): its primary key or a unique key."""

    table: str
    key: tuple[str, ...] = ("id",)
    schema: str | None = None


@dataclass(frozen=True)
class OpenTable:
    """One configured collection's reflected table, with its system's dialect."""

    system: str
    collection: str
    table: sa.Table
    key: tuple[str, ...]
    dialect: sa.Dialect

    @property
    def sqlite(self) -> bool:
        return self.dialect.name == "sqlite"

    @property
    def key_columns(self) -> list[sa.Column[Any]]:
        return [self.table.c[name] for name in self.key]

    def record(self, key: str) -> str:
        """The record's name in messages: ``system/collection/key``."""
        return f"{self.system}/{self.collection}/{key}"

    def key_values(self, key: str) -> tuple[Any, ...]:
        """The key columns' values a key text names; refused unless the text is the record's
        one key text (``05`` for an integer 5, ``a%2Fb`` for a one-column key ``a/b``)."""
        columns = self.key_columns
        parts = split_key(key, len(columns))
        record = self.record(key)
        if len(parts) != len(columns):
            raise AdapterError(
                f"{record}: the key has {len(parts)} part(s), the table's key has "
                f"{len(columns)} ({', '.join(c.name for c in columns)}); write a '/' inside "
                "a part as %2F"
            )
        values = tuple(
            from_text(column, part, record) for column, part in zip(columns, parts, strict=True)
        )
        if join_key(values) != key:
            raise AdapterError(
                f"{record}: the record's key is written {join_key(values)!r}; use that"
            )
        return values


def open_engine(system: str, url: str | Engine) -> Engine:
    """The system's engine (a given one as is); a SQLite one takes its write lock at BEGIN."""
    if isinstance(url, Engine):
        engine = url
    else:
        _refuse_a_missing_sqlite_file(system, sa.engine.make_url(url))
        engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        _take_the_write_lock_at_begin(engine)
    return engine


def open_table(
    system: str, engine: Engine, routes: dict[str, SqlCollection], collection: str
) -> OpenTable:
    """Reflect a configured collection's table, its key checked to name one row."""
    route = routes.get(collection)
    if route is None:
        raise ConfigurationError(
            f"system {system!r} has no collection {collection!r}; "
            f"known: {', '.join(sorted(routes))}"
        )
    try:
        table = sa.Table(  # an unreachable database: the CLI's edge explains it
            route.table, sa.MetaData(), autoload_with=engine, schema=route.schema
        )
    except sa.exc.NoSuchTableError:
        raise ConfigurationError(
            f"{system}/{collection}: table {route.table!r} does not exist"
        ) from None
    missing = [name for name in route.key if name not in table.c]
    if missing:
        raise ConfigurationError(
            f"{system}/{collection}: key column {missing[0]!r} is not in table {route.table!r}"
        )
    _refuse_a_key_that_is_not_unique(f"{system}/{collection}", route.key, table)
    return OpenTable(system, collection, table, route.key, engine.dialect)


def relations_of(table: sa.Table, routes: dict[str, SqlCollection]) -> tuple[Relation, ...]:
    """The table's single-column foreign keys to the key of another configured collection."""
    found = []
    for constraint in table.foreign_key_constraints:
        if len(constraint.elements) != 1:
            continue
        (element,) = constraint.elements
        for parent, route in routes.items():
            if (
                route.table == element.column.table.name
                and route.key == (element.column.name,)
                and route.schema == element.column.table.schema
            ):
                found.append(Relation(str(element.parent.name), parent))
    return tuple(found)


def _refuse_a_missing_sqlite_file(system: str, url: sa.URL) -> None:
    """SQLite creates a database file that does not exist: a typo in a path would become an
    empty target, every record of it "missing"."""
    if url.get_backend_name() != "sqlite":
        return
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query.get("uri"):
        return
    if not Path(database).is_file():
        raise ConfigurationError(
            f"system {system!r}: the SQLite database {database} does not exist "
            f"(resolved: {Path(database).resolve()}); fix url, or create the database first"
        )


def _refuse_a_key_that_is_not_unique(where: str, key: tuple[str, ...], table: sa.Table) -> None:
    """A write names one record by its key; a key that is not unique would let it change
    several rows. The key must contain the primary key, or a unique constraint or index (not
    partial) of NOT NULL columns."""
    primary = [str(column.name) for column in table.primary_key.columns]
    unique: list[list[str]] = [
        [str(column.name) for column in constraint.columns]
        for constraint in table.constraints
        if isinstance(constraint, sa.UniqueConstraint)
    ]
    unique += [
        [str(column.name) for column in index.columns]
        for index in table.indexes
        if index.unique
        and len(index.columns) == len(index.expressions)
        and not any(options.get("where") is not None for options in index.dialect_options.values())
    ]
    if primary and set(primary) <= set(key):
        return
    for columns in unique:
        if columns and set(columns) <= set(key) and not any(table.c[c].nullable for c in columns):
            return
    named = [f"primary key ({', '.join(primary)})"] if primary else ["no primary key"]
    named += [f"unique ({', '.join(columns)})" for columns in unique]
    raise ConfigurationError(
        f"{where}: key ({', '.join(key)}) is not a unique key of table {table.name!r} "
        f"[{'; '.join(named)}], so one write could change several rows; declare key = "
        "the table's primary key (or a unique key of NOT NULL columns)"
    )


def _take_the_write_lock_at_begin(engine: Engine) -> None:
    """pysqlite's deferred BEGIN reads before locking: a write transaction begins IMMEDIATE (the
    write lock taken before the compare), a read one stays deferred (a long scan locks nothing)."""

    @sa.event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA busy_timeout = 30000")
        # SQLite leaves declared foreign keys unenforced unless asked, per connection.
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        writing = connection.get_execution_options().get("ledger_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")
