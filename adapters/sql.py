"""SQL table adapter: any SQLAlchemy URL, any table, single or composite key.

Compare-and-set holds a lock across read, compare and write: on SQLite every write chunk
runs in ``BEGIN IMMEDIATE`` (the database write lock is taken before the read), on PostgreSQL
the chunk's rows are read ``FOR UPDATE`` in key order (so two writers cannot deadlock).
Nothing can change a row between the compare and the write.

Writes that pass the compare run as ``executemany`` groups; if a group hits a constraint,
it is redone row by row inside savepoints so that exactly the offending rows fail, with the
database's own reason, and the others apply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from adapters.protocol import (
    Record,
    Relation,
    Write,
    WriteResult,
    check_expected,
    join_key,
    split_key,
)
from ledger.errors import AdapterError, ConfigurationError, TransientError

CHUNK = 500


@dataclass(frozen=True)
class SqlCollection:
    """A table and its key column(s)."""

    table: str
    key: tuple[str, ...] = ("id",)
    schema: str | None = None


class SqlAdapter:
    """Reads and compare-and-set writes rows of SQL tables."""

    def __init__(
        self,
        system: str,
        url: str | Engine,
        collections: dict[str, SqlCollection],
    ):
        self.system = system
        self.engine = url if isinstance(url, Engine) else sa.create_engine(url)
        self.sqlite = self.engine.dialect.name == "sqlite"
        if self.sqlite:
            _take_the_write_lock_at_begin(self.engine)
        self.routes = collections
        self._tables: dict[str, sa.Table] = {}

    def table(self, collection: str) -> sa.Table:
        if collection not in self._tables:
            route = self.routes.get(collection)
            if route is None:
                raise ConfigurationError(
                    f"system {self.system!r} has no collection {collection!r}; "
                    f"known: {', '.join(sorted(self.routes))}"
                )
            try:
                table = sa.Table(
                    route.table, sa.MetaData(), autoload_with=self.engine, schema=route.schema
                )
            except sa.exc.NoSuchTableError:
                raise ConfigurationError(
                    f"{self.system}/{collection}: table {route.table!r} does not exist"
                ) from None
            missing = [name for name in route.key if name not in table.c]
            if missing:
                raise ConfigurationError(
                    f"{self.system}/{collection}: key column {missing[0]!r} is not in "
                    f"table {route.table!r}"
                )
            self._tables[collection] = table
        return self._tables[collection]

    def normalize(self, collection: str, values: Record) -> Record:
        """Lossless conversions to the columns' types: JSON has no float/int distinction, no
        Decimal and no dates, so changes arriving as JSON would otherwise not fit (or would
        read back as another type than the ledger recorded)."""
        table = self.table(collection)
        converted = {
            name: _converted(_python_type(table.c[name]), value) if name in table.c else value
            for name, value in values.items()
        }
        unchanged = all(converted[name] is value for name, value in values.items())
        return values if unchanged else converted

    def assigns_keys(self, collection: str) -> bool:
        return False  # a row is inserted with the key it is given

    def relations(self, collection: str) -> tuple[Relation, ...]:
        """The table's single-column foreign keys to the key of another configured collection."""
        table = self.table(collection)
        found = []
        for constraint in table.foreign_key_constraints:
            if len(constraint.elements) != 1:
                continue
            (element,) = constraint.elements
            for parent, route in self.routes.items():
                if (
                    route.table == element.column.table.name
                    and route.key == (element.column.name,)
                    and route.schema == element.column.table.schema
                ):
                    found.append(Relation(str(element.parent.name), parent))
        return tuple(found)

    # Keys --------------------------------------------------------------------------------

    def _key_columns(self, collection: str) -> list[sa.Column[Any]]:
        table = self.table(collection)
        return [table.c[name] for name in self.routes[collection].key]

    def _key_values(self, collection: str, key: str) -> tuple[Any, ...]:
        columns = self._key_columns(collection)
        parts = split_key(key) if len(columns) > 1 else [key]
        if len(parts) != len(columns):
            raise AdapterError(
                f"{self.system}/{collection}/{key}: the key has {len(parts)} part(s), "
                f"the table's key has {len(columns)}"
            )
        return tuple(
            _from_text(column, part, key) for column, part in zip(columns, parts, strict=True)
        )

    def _row_reader(self, collection: str) -> Callable[[Sequence[Any]], tuple[str, Record]]:
        """Turns a row of ``select(table)`` into (key text, record), by column position: a
        scan of a million rows spends its time here."""
        table = self.table(collection)
        keys = self.routes[collection].key
        names = [str(column.name) for column in table.c]  # plain str, not quoted_name
        at_key = [names.index(name) for name in keys]
        fields = [(index, name) for index, name in enumerate(names) if name not in keys]
        if len(at_key) == 1:
            (single,) = at_key

            def read(row: Sequence[Any]) -> tuple[str, Record]:
                return str(row[single]), {name: row[index] for index, name in fields}

            return read

        def read_composite(row: Sequence[Any]) -> tuple[str, Record]:
            key = join_key([row[index] for index in at_key])
            return key, {name: row[index] for index, name in fields}

        return read_composite

    def _where_keys(self, collection: str, keys: Sequence[str]) -> Any:
        columns = self._key_columns(collection)
        values = [self._key_values(collection, key) for key in keys]
        if len(columns) == 1:
            return columns[0].in_([value[0] for value in values])
        return sa.tuple_(*columns).in_(values)

    # Reads -------------------------------------------------------------------------------

    def read(self, collection: str, keys: Sequence[str]) -> dict[str, Record | None]:
        found: dict[str, Record | None] = dict.fromkeys(keys)
        with self._connect() as connection:
            found.update(self._read(connection, collection, keys, lock=False))
        return found

    def _read(
        self, connection: Connection, collection: str, keys: Sequence[str], *, lock: bool
    ) -> dict[str, Record]:
        table = self.table(collection)
        reader = self._row_reader(collection)
        rows: dict[str, Record] = {}
        ordered = sorted(set(keys))
        for start in range(0, len(ordered), CHUNK):
            query = sa.select(table).where(
                self._where_keys(collection, ordered[start : start + CHUNK])
            )
            if lock and not self.sqlite:
                query = query.order_by(*self._key_columns(collection)).with_for_update()
            for row in connection.execute(query):
                key, record = reader(row)
                rows[key] = record
        return rows

    def scan(self, collection: str) -> Iterator[tuple[str, Record]]:
        table = self.table(collection)
        order: list[Any] = [sa.cast(c, sa.String) for c in self._key_columns(collection)]
        if not self.sqlite:  # byte order, as Python compares str (SQLite's default already)
            order = [expression.collate("C") for expression in order]
        query = sa.select(table).order_by(*order)
        reader = self._row_reader(collection)
        with self._connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=1000).execute(
                query
            )
            for row in result:
                yield reader(row)

    # Writes ------------------------------------------------------------------------------

    def write(self, collection: str, writes: Sequence[Write]) -> list[WriteResult]:
        table = self.table(collection)
        with (
            self._connect() as base,
            base.execution_options(ledger_write=True) as connection,
            connection.begin(),
        ):
            return self._write(connection, collection, table, writes)

    def _write(
        self, connection: Connection, collection: str, table: sa.Table, writes: Sequence[Write]
    ) -> list[WriteResult]:
        results: list[WriteResult | None] = [None] * len(writes)
        current = self._read(connection, collection, [w.key for w in writes], lock=True)
        groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
        for index, write in enumerate(writes):
            before = current.get(write.key)
            refused = check_expected(write.key, write, before) or self._check_values(
                collection, table, write
            )
            if refused is not None:
                results[index] = refused
                continue
            if write.operation != "create":
                current[write.key] = {**(before or {}), **write.values}
            elif write.key in current:  # a second create of the same key in one chunk
                results[index] = check_expected(write.key, write, current[write.key])
                continue
            else:
                current[write.key] = dict(write.values)
            results[index] = WriteResult(write.key, "applied", before)
            groups.setdefault((write.operation, tuple(sorted(write.values))), []).append(index)
        for (operation, _), indexes in groups.items():
            self._apply_group(connection, collection, table, operation, writes, indexes, results)
        return [result for result in results if result is not None]

    def _check_values(self, collection: str, table: sa.Table, write: Write) -> WriteResult | None:
        record = f"{self.system}/{collection}/{write.key}"
        if write.unset:
            return WriteResult(
                write.key,
                "failed",
                error=f"{record}: SQL columns cannot be absent; "
                f"set {write.unset[0]!r} to null instead of unsetting it",
            )
        for name, value in write.values.items():
            if name not in table.c or name in self.routes[collection].key:
                reason = "is not a column" if name not in table.c else "is part of the key"
                return WriteResult(
                    write.key, "failed", error=f"{record}: field {name!r} {reason} of {table.name}"
                )
            wrong = _wrong_type(table.c[name], value)
            if wrong:
                return WriteResult(write.key, "failed", error=f"{record}: field {name!r} {wrong}")
        return None

    def _apply_group(
        self,
        connection: Connection,
        collection: str,
        table: sa.Table,
        operation: str,
        writes: Sequence[Write],
        indexes: list[int],
        results: list[WriteResult | None],
    ) -> None:
        statement, rows = self._statement(
            collection, table, operation, [writes[i] for i in indexes]
        )
        try:
            with connection.begin_nested():
                connection.execute(statement, rows)
            return
        except sa.exc.IntegrityError:
            pass  # find exactly which rows the database refuses, one savepoint each
        for index, row in zip(indexes, rows, strict=True):
            try:
                with connection.begin_nested():
                    connection.execute(statement, [row])
            except sa.exc.IntegrityError as error:
                record = f"{self.system}/{collection}/{writes[index].key}"
                reason = str(error.orig).strip()
                if "FOREIGN KEY" in reason and self.sqlite:  # SQLite names no key: find it
                    reason += _broken_reference(connection, table, operation, row)
                results[index] = WriteResult(
                    writes[index].key,
                    "failed",
                    cast_before(results[index]),
                    error=f"{record}: {table.name} refused the {operation}: {reason}",
                )

    def _statement(
        self, collection: str, table: sa.Table, operation: str, writes: list[Write]
    ) -> tuple[Any, list[dict[str, Any]]]:
        key_names = self.routes[collection].key
        rows = []
        for write in writes:
            key = dict(zip(key_names, self._key_values(collection, write.key), strict=True))
            rows.append(
                {**{f"k_{n}": v for n, v in key.items()}, **write.values}
                if operation != "create"
                else {**key, **write.values}
            )
        if operation == "create":
            return sa.insert(table), rows
        match = sa.and_(*(table.c[name] == sa.bindparam(f"k_{name}") for name in key_names))
        if operation == "delete":
            return sa.delete(table).where(match), rows
        columns: dict[str, Any] = {name: sa.bindparam(name) for name in writes[0].values}
        return sa.update(table).where(match).values(columns), rows

    def _connect(self) -> Connection:
        try:
            return self.engine.connect()
        except sa.exc.OperationalError as error:
            raise TransientError(f"{self.system}: cannot connect: {error.orig}") from error

    def close(self) -> None:
        self.engine.dispose()


def _broken_reference(
    connection: Connection, table: sa.Table, operation: str, row: dict[str, Any]
) -> str:
    """Which reference a refused row breaks: a parent it names that does not exist, or (for a
    delete) the child rows that still reference it."""
    if operation == "delete":
        keys = {name[2:]: value for name, value in row.items() if name.startswith("k_")}
        inspector = sa.inspect(connection)
        for child in inspector.get_table_names():
            for reference in inspector.get_foreign_keys(child):
                if reference["referred_table"] != table.name:
                    continue
                pairs = list(
                    zip(
                        reference["constrained_columns"], reference["referred_columns"], strict=True
                    )
                )
                if not all(parent in keys for _, parent in pairs):
                    continue
                where = " AND ".join(f'"{column}" = :{column}' for column, _ in pairs)
                count = connection.execute(
                    sa.text(f'SELECT count(*) FROM "{child}" WHERE {where}'),
                    {column: keys[parent] for column, parent in pairs},
                ).scalar_one()
                if count:
                    named = ", ".join(column for column, _ in pairs)
                    return f" (still referenced by {count} row(s) of {child}.{named})"
        return ""
    for constraint in table.foreign_key_constraints:
        columns = [element.parent.name for element in constraint.elements]
        if not all(name in row and row[name] is not None for name in columns):
            continue
        parent = constraint.elements[0].column.table
        match = sa.and_(
            *(element.column == row[element.parent.name] for element in constraint.elements)
        )
        if connection.execute(sa.select(sa.func.count()).select_from(parent).where(match)).scalar():
            continue
        values = ", ".join(f"{name} = {row[name]!r}" for name in columns)
        targets = ", ".join(f"{parent.name}.{e.column.name}" for e in constraint.elements)
        name = f" {constraint.name}" if constraint.name else ""
        return f" (field {values} refers to {targets}, which has no such row: foreign key{name})"
    return ""


def cast_before(result: WriteResult | None) -> Record | None:
    return result.before if result is not None else None


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


def _python_type(column: sa.Column[Any]) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:
        return None


def _from_text(column: sa.Column[Any], text: str, key: str) -> Any:
    kind = _python_type(column)
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise AdapterError(f"key {key!r}: {column.name} takes whole numbers") from None
    return text


def _converted(kind: type | None, value: Any) -> Any:
    """``value`` as a ``kind``, when that loses nothing; else unchanged."""
    try:
        if kind is float and type(value) is int and float(value) == value:
            return float(value)
        if kind is Decimal and type(value) in (int, float):
            return Decimal(value) if type(value) is int else Decimal(repr(value))
        if type(value) is str and kind in (date, datetime, time):
            return kind.fromisoformat(value)
    except (ValueError, OverflowError, ArithmeticError):
        pass  # not what the column holds: the write refuses it, naming the field
    return value


_ACCEPTED: dict[type, tuple[type, ...]] = {
    int: (int,),
    float: (int, float),
    Decimal: (int, Decimal),
    bool: (bool,),
    str: (str,),
    date: (date,),
    datetime: (datetime,),
    time: (time,),
    bytes: (bytes,),
}


def _wrong_type(column: sa.Column[Any], value: Any) -> str | None:
    """Why a value does not fit a column (SQLite would store it anyway), or None."""
    if value is None:
        return None if column.nullable else f"is NOT NULL in {column.table.name}"
    kind = _python_type(column)
    accepted = _ACCEPTED.get(kind) if kind is not None else None
    if kind is None or accepted is None or type(value) in accepted:
        return None
    return f"takes {kind.__name__} values, not {type(value).__name__} ({value!r})"
