"""SQL table adapter: any SQLAlchemy URL, any table, single or composite key.

Opening the adapter reflects every configured table and refuses a declared key that is not
the table's primary key or a unique key of NOT NULL columns (a write by any other key could
change several rows), and a SQLite file that does not exist (SQLite would create it empty).

Compare-and-set holds a lock across read, compare and write: on SQLite every write chunk
runs in ``BEGIN IMMEDIATE`` (the database write lock is taken before the read), on PostgreSQL
the chunk's rows are read ``FOR UPDATE`` in key order (so two writers cannot deadlock).
Nothing can change a row between the compare and the write.

Every value is checked to fit its column exactly before anything of the chunk is sent (an
integer within the column's range, a Decimal within NUMERIC(p, s), text within VARCHAR(n),
an offset where the column keeps one): a value that would be refused, rounded, truncated or
read back as something else is a ``failed`` result naming the field. Writes that pass run
as ``executemany`` groups, and each group must change exactly one row per write (the row
count, in the same transaction); if a group hits a constraint or its count is wrong, it is
redone row by row inside savepoints so that exactly the offending rows fail, with the
database's own reason, and the others apply.

JSON columns are read as text and parsed exactly (`ledger.values.parse_json`), and written
as text (`adapters.jsontext`), so SQL NULL and the JSON document ``null`` stay apart and
numbers keep every digit.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from adapters.jsontext import json_text
from adapters.keysort import sorted_by_key
from ledger.errors import AdapterError, ConfigurationError, InvalidValue, TransientError
from ledger.keys import join_key, split_key
from ledger.ports import Record, Relation, Write, WriteResult, check_expected
from ledger.values import JSON_NULL, parse_json, same

CHUNK = 500


@dataclass(frozen=True)
class SqlCollection:
    """A table and its key column(s): its primary key or a unique key."""

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
        if not isinstance(url, Engine):
            _refuse_a_missing_sqlite_file(system, sa.engine.make_url(url))
        self.engine = url if isinstance(url, Engine) else sa.create_engine(url)
        self.sqlite = self.engine.dialect.name == "sqlite"
        if self.sqlite:
            _take_the_write_lock_at_begin(self.engine)
        self.routes = collections
        self._tables: dict[str, sa.Table] = {}
        self._selects: dict[str, tuple[sa.Select[Any], Callable[[Any], tuple[str, Record]]]] = {}
        for collection in collections:
            self.table(collection)

    def table(self, collection: str) -> sa.Table:
        if collection not in self._tables:
            route = self.routes.get(collection)
            if route is None:
                raise ConfigurationError(
                    f"system {self.system!r} has no collection {collection!r}; "
                    f"known: {', '.join(sorted(self.routes))}"
                )
            try:
                table = sa.Table(  # an unreachable database: the CLI's edge explains it
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
            _refuse_a_key_that_is_not_unique(f"{self.system}/{collection}", route.key, table)
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
        """The key columns' values a key text names; refused unless the text is the record's
        one key text (``05`` for an integer 5, ``a%2Fb`` for a one-column key ``a/b``)."""
        columns = self._key_columns(collection)
        parts = split_key(key, len(columns))
        record = f"{self.system}/{collection}/{key}"
        if len(parts) != len(columns):
            raise AdapterError(
                f"{record}: the key has {len(parts)} part(s), the table's key has "
                f"{len(columns)} ({', '.join(c.name for c in columns)}); write a '/' inside "
                "a part as %2F"
            )
        values = tuple(
            _from_text(column, part, record) for column, part in zip(columns, parts, strict=True)
        )
        if join_key(values) != key:
            raise AdapterError(
                f"{record}: the record's key is written {join_key(values)!r}; use that"
            )
        return values

    def _select(
        self, collection: str
    ) -> tuple[sa.Select[Any], Callable[[Any], tuple[str, Record]]]:
        """``select`` of the table's columns (JSON ones as text, so that SQL NULL and the JSON
        document null stay apart) and the function turning a row into (key text, record), by
        column position: a scan of a million rows spends its time there."""
        if collection in self._selects:
            return self._selects[collection]
        table = self.table(collection)
        keys = self.routes[collection].key
        names = [str(column.name) for column in table.c]  # plain str, not quoted_name
        select = sa.select(*(self._as_read(column) for column in table.c))
        where = f"{self.system}/{collection}"
        at_key = [names.index(name) for name in keys]
        fields = [(index, name) for index, name in enumerate(names) if name not in keys]
        documents = [(i, name) for i, name in fields if _is_json(table.c[name])]

        def read(row: Sequence[Any]) -> tuple[str, Record]:
            key = join_key([row[index] for index in at_key])
            record = {name: row[index] for index, name in fields}
            for index, name in documents:
                record[name] = _document(row[index], f"{where}/{key}: field {name!r}")
            return key, record

        self._selects[collection] = select, read
        return select, read

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
        select, reader = self._select(collection)
        rows: dict[str, Record] = {}
        ordered = sorted(set(keys))
        for start in range(0, len(ordered), CHUNK):
            query = select.where(self._where_keys(collection, ordered[start : start + CHUNK]))
            if lock and not self.sqlite:
                query = query.order_by(*self._key_columns(collection)).with_for_update()
            for row in connection.execute(query):
                key, record = reader(row)
                rows[key] = record
        return rows

    def scan(self, collection: str) -> Iterator[tuple[str, Record]]:
        """In key-text order (`ledger.keys`): the database sorts by the key text itself when
        it can write it as Python does (text and integer columns), else the rows are sorted
        on their way out (`adapters.keysort`)."""
        columns = self._key_columns(collection)
        order = self._key_text_order(columns)
        if order is None:
            return sorted_by_key(self._scan(collection, None))
        return self._scan(collection, order)

    def _scan(self, collection: str, order: Any) -> Iterator[tuple[str, Record]]:
        select, reader = self._select(collection)
        query = select if order is None else select.order_by(order)
        with self._connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=1000).execute(
                query
            )
            for row in result:
                yield reader(row)

    def _key_text_order(self, columns: list[sa.Column[Any]]) -> Any:
        """An SQL expression ordering rows by their key text exactly as Python compares it
        (byte order of UTF-8 is code point order: SQLite's BINARY, PostgreSQL's "C"), or
        None if a key column's text in SQL may differ from Python's ``str``."""
        collation = {"sqlite": "BINARY", "postgresql": "C"}.get(self.engine.dialect.name)
        if collation is None:
            return None  # a collation ordering by code point is not known here: sort
        if len(columns) == 1 and _python_type(columns[0]) is str and _exact_text(columns[0]):
            # Writing '%' as %25 keeps the order of one-part key texts: the column's order.
            return columns[0].collate(collation)
        if not all(_exact_text(column) for column in columns):
            return None
        text: Any = None
        for column in columns:
            part: Any = sa.func.replace(sa.cast(column, sa.Text), "%", "%25")
            if len(columns) > 1:
                part = sa.func.replace(part, "/", "%2F")
            text = part if text is None else text.concat("/").concat(part)
        return text.collate(collation)

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
                field=write.unset[0],
                error=f"{record}: SQL columns cannot be absent; "
                f"set {write.unset[0]!r} to null instead of unsetting it",
            )
        for name, value in write.values.items():
            if name not in table.c or name in self.routes[collection].key:
                reason = "is not a column" if name not in table.c else "is part of the key"
                return WriteResult(
                    write.key,
                    "failed",
                    field=name,
                    error=f"{record}: field {name!r} {reason} of {table.name}",
                )
            wrong = _unfit(table.c[name], value, self.engine.dialect)
            if wrong:
                return WriteResult(
                    write.key, "failed", field=name, error=f"{record}: field {name!r} {wrong}"
                )
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
        counted = operation != "create"  # an insert adds one row or fails
        if not counted or self.engine.dialect.supports_sane_multi_rowcount:
            try:
                with connection.begin_nested():
                    changed = connection.execute(statement, rows).rowcount
                    if counted and changed != len(rows):
                        raise _NotOneRow(changed)
                return
            except (sa.exc.IntegrityError, sa.exc.DataError, _NotOneRow):
                pass  # find exactly which rows are refused, one savepoint each
        for index, row in zip(indexes, rows, strict=True):
            write = writes[index]
            record = f"{self.system}/{collection}/{write.key}"
            try:
                with connection.begin_nested():
                    changed = connection.execute(statement, row).rowcount
                    if counted and changed != 1:
                        raise _NotOneRow(changed)
            except _NotOneRow as wrong:
                counted_rows = (
                    f"would have changed {wrong.rows} rows of {table.name}, not 1"
                    if wrong.rows >= 0
                    else f"changed rows of {table.name} the database did not count"
                )
                error = (
                    f"{record}: the {operation} {counted_rows}; nothing of it was written (is the "
                    f"key {list(self.routes[collection].key)} unique?)"
                )
                results[index] = WriteResult(
                    write.key, "failed", _before(results[index]), error=error
                )
            except (sa.exc.IntegrityError, sa.exc.DataError) as error:
                reason = str(error.orig).strip()
                if "FOREIGN KEY" in reason and self.sqlite:  # SQLite names no key: find it
                    named = self._key_values(collection, write.key)
                    key = dict(zip(self.routes[collection].key, named, strict=True))
                    reason += _broken_reference(connection, table, operation, key, write.values)
                results[index] = WriteResult(
                    write.key,
                    "failed",
                    _before(results[index]),
                    error=f"{record}: {table.name} refused the {operation}: {reason}",
                )

    def _statement(
        self, collection: str, table: sa.Table, operation: str, writes: list[Write]
    ) -> tuple[Any, list[dict[str, Any]]]:
        """One statement for a group of writes of the same shape, and a row of parameters
        per write (named ``k0…`` for key columns and ``v0…`` for values: column names
        may be anything)."""
        key_names = self.routes[collection].key
        value_names = list(writes[0].values)
        rows = []
        for write in writes:
            row = {f"k{i}": v for i, v in enumerate(self._key_values(collection, write.key))}
            for i, name in enumerate(value_names):
                value = write.values[name]
                row[f"v{i}"] = _json_param(value) if _is_json(table.c[name]) else value
            rows.append(row)
        values = {name: self._param(table.c[name], f"v{i}") for i, name in enumerate(value_names)}
        if operation == "create":
            keys = {
                name: sa.bindparam(f"k{i}", type_=table.c[name].type)
                for i, name in enumerate(key_names)
            }
            return sa.insert(table).values({**keys, **values}), rows
        match = sa.and_(
            *(
                table.c[name] == sa.bindparam(f"k{i}", type_=table.c[name].type)
                for i, name in enumerate(key_names)
            )
        )
        if operation == "delete":
            return sa.delete(table).where(match), rows
        return sa.update(table).where(match).values(values), rows

    def _as_read(self, column: sa.Column[Any]) -> Any:
        """A column as `_select` reads it: JSON as the database holds it (PostgreSQL's driver
        would parse it, making SQL NULL and the document null one None), as text there;
        SQLite's value itself (its JSON columns have NUMERIC affinity: a number document is
        stored as a number, whose text would be rounded to 15 digits)."""
        if not _is_json(column):
            return column
        if self.sqlite:
            return sa.type_coerce(column, sa.types.NullType()).label(column.name)
        return sa.cast(column, sa.Text).label(column.name)

    def _param(self, column: sa.Column[Any], name: str) -> Any:
        """The bound value for a column: JSON columns take their document as text (cast to
        the column's type where the database needs it), so that None is SQL NULL."""
        if not _is_json(column):
            return sa.bindparam(name, type_=column.type)
        text = sa.bindparam(name, type_=sa.Text)
        return text if self.sqlite else sa.cast(text, column.type)

    def _connect(self) -> Connection:
        try:
            return self.engine.connect()
        except sa.exc.OperationalError as error:
            reason = str(error.orig or error).strip().splitlines()[0]
            raise TransientError(f"{self.system}: cannot connect: {reason}") from error

    def close(self) -> None:
        self.engine.dispose()


class _NotOneRow(Exception):
    """A write's statement changed another number of rows than one (rolled back)."""

    def __init__(self, rows: int):
        super().__init__(rows)
        self.rows = rows


def _before(result: WriteResult | None) -> Record | None:
    return result.before if result is not None else None


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


def _broken_reference(
    connection: Connection,
    table: sa.Table,
    operation: str,
    key: dict[str, Any],
    values: dict[str, Any],
) -> str:
    """Which reference a refused row breaks: a parent it names that does not exist, or (for a
    delete) the child rows that still reference it."""
    if operation == "delete":
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
                if not all(parent in key for _, parent in pairs):
                    continue
                where = " AND ".join(f'"{column}" = :{column}' for column, _ in pairs)
                count = connection.execute(
                    sa.text(f'SELECT count(*) FROM "{child}" WHERE {where}'),
                    {column: key[parent] for column, parent in pairs},
                ).scalar_one()
                if count:
                    named = ", ".join(column for column, _ in pairs)
                    return f" (still referenced by {count} row(s) of {child}.{named})"
        return ""
    row = {**key, **values}
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
        shown = ", ".join(f"{name} = {row[name]!r}" for name in columns)
        targets = ", ".join(f"{parent.name}.{e.column.name}" for e in constraint.elements)
        name = f" {constraint.name}" if constraint.name else ""
        return f" (field {shown} refers to {targets}, which has no such row: foreign key{name})"
    return ""


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


# Columns and values ------------------------------------------------------------------------


def _python_type(column: sa.Column[Any]) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:
        return None


def _is_json(column: sa.Column[Any]) -> bool:
    return isinstance(column.type, sa.JSON)


def _exact_text(column: sa.Column[Any]) -> bool:
    """Whether ``CAST(column AS TEXT)`` is Python's ``str`` of its value: integers and text
    (not CHAR(n), which PostgreSQL pads)."""
    kind = _python_type(column)
    return kind is int or (kind is str and not isinstance(column.type, sa.CHAR))


def _from_text(column: sa.Column[Any], text: str, record: str) -> Any:
    kind = _python_type(column)
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise AdapterError(f"{record}: {column.name} takes whole numbers") from None
    return text


def _document(text: str | float | None, where: str) -> Any:
    """A JSON column's value as read: SQL NULL is None, the document ``null`` is JSON_NULL,
    any other document is parsed exactly (SQLite may hold a number document as a number)."""
    if text is None:
        return None
    if not isinstance(text, str):
        return text
    try:
        document = parse_json(text, where)
    except InvalidValue as error:
        raise AdapterError(f"{error}; the ledger cannot hold it exactly") from None
    return JSON_NULL if document is None else document


def _json_param(value: Any) -> str | None:
    """A JSON column's document as text for the database: None is SQL NULL, JSON_NULL the
    document ``null``."""
    if value is None:
        return None
    return "null" if value is JSON_NULL else json_text(value)


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


def _unfit(column: sa.Column[Any], value: Any, dialect: sa.Dialect) -> str | None:
    """Why the column cannot hold `value` exactly (the database would refuse it, round it,
    truncate it or give back something else), or None."""
    if value is None:
        return None if column.nullable else f"is NOT NULL in {column.table.name}"
    if _is_json(column):
        return None if value is JSON_NULL else _unfit_document(column, value, dialect)
    if value is JSON_NULL:
        return "is the JSON document null, but its column is not JSON; write null (SQL NULL)"
    kind = _python_type(column)
    accepted = _ACCEPTED.get(kind) if kind is not None else None
    if kind is None or accepted is None:
        return None
    if type(value) not in accepted:
        return f"takes {kind.__name__} values, not {type(value).__name__} ({value!r})"
    sqlite = dialect.name == "sqlite"
    column_type = column.type
    if type(value) is int and kind in (int, float, Decimal):
        if kind is int:
            bits = _integer_bits(column_type, sqlite)
            if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
                return (
                    f"is {value}, beyond the range of its {column_type} column "
                    f"(-2**{bits - 1} to 2**{bits - 1}-1)"
                )
            return None
        if kind is float:
            return _unfit_float(column_type, value, sqlite)
        return _unfit_decimal(column, Decimal(value), dialect)
    if kind is float:
        return _unfit_float(column_type, value, sqlite)
    if kind is Decimal:
        return _unfit_decimal(column, value, dialect)
    if kind is str:
        return _unfit_text(column_type, value, sqlite)
    if kind in (datetime, time):
        return _unfit_moment(column_type, value, sqlite)
    return None


def _integer_bits(column_type: Any, sqlite: bool) -> int:
    """SQLite's INTEGER holds 64 bits whatever the declared name; elsewhere the type says."""
    if sqlite or isinstance(column_type, sa.BigInteger):
        return 64
    return 16 if isinstance(column_type, sa.SmallInteger) else 32


def _unfit_float(column_type: Any, value: int | float, sqlite: bool) -> str | None:
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if number != value:
        return f"is {value}, which its floating-point column would hold as {number!r}"
    if not sqlite and isinstance(column_type, sa.REAL):  # PostgreSQL's real: 4 bytes
        try:
            single = struct.unpack("f", struct.pack("f", number))[0]
        except OverflowError:
            single = math.inf
        if single != number:
            return f"is {value!r}, which its REAL column (4 bytes) would hold as {single!r}"
    return None


def _unfit_decimal(column: sa.Column[Any], value: Decimal, dialect: sa.Dialect) -> str | None:
    column_type: Any = column.type
    if dialect.name == "sqlite":  # no decimal type: stored as a float, read back at a scale
        impl = column_type.dialect_impl(dialect)
        bind = impl.bind_processor(dialect)
        result = impl.result_processor(dialect, None)
        stored = bind(value) if bind else value
        back = result(stored) if result else stored
        if back != value:
            return f"is {value}, which SQLite (no decimal type) would give back as {back}"
        return None
    precision, scale = column_type.precision, column_type.scale or 0
    if precision is None:
        return None
    if abs(value) >= Decimal(10) ** (precision - scale):
        return f"is {value}, too large for NUMERIC({precision}, {scale})"
    with localcontext() as context:
        context.prec = precision + 2
        if value != value.quantize(Decimal(1).scaleb(-scale)):
            return f"is {value}, which NUMERIC({precision}, {scale}) would round"
    return None


def _unfit_text(column_type: Any, value: str, sqlite: bool) -> str | None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"holds {value!r}, which is not valid Unicode text (a lone surrogate)"
    if sqlite:
        return None  # SQLite keeps any text whole, whatever length is declared
    if "\x00" in value:
        return "holds a NUL character, which PostgreSQL text cannot hold"
    length = getattr(column_type, "length", None)
    if length is not None and len(value) > length:
        return f"is {len(value)} characters long; its {column_type} column holds {length}"
    if length is not None and isinstance(column_type, sa.CHAR) and len(value) < length:
        return f"is {len(value)} characters; {column_type} would give it back padded with spaces"
    return None


def _unfit_moment(column_type: Any, value: datetime | time, sqlite: bool) -> str | None:
    aware = value.utcoffset() is not None
    if sqlite and aware:
        return (
            f"is {value.isoformat()}; SQLite's {column_type} column keeps no UTC offset: "
            "write the time without one (in UTC), or use a text column"
        )
    keeps_offset = bool(getattr(column_type, "timezone", False))
    if not sqlite and aware != keeps_offset:
        wanted = "with a UTC offset" if keeps_offset else "without a UTC offset"
        return f"is {value.isoformat()}; its {column_type} column takes times {wanted}"
    if aware and isinstance(value, datetime):
        try:
            value.astimezone(UTC)
        except OverflowError:
            return f"is {value.isoformat()}, which in UTC falls outside the years 1 to 9999"
    return None


def _unfit_document(column: sa.Column[Any], value: Any, dialect: sa.Dialect) -> str | None:
    """A JSON column's document must read back the same (`same`): only JSON's own types, a
    Decimal only where it has more digits than a float; PostgreSQL's JSONB also writes a
    number's exponent out (1e+16 comes back as an integer) and holds no NUL character."""
    try:
        text = json_text(value)
        back = parse_json(text, "the document")
    except (ValueError, InvalidValue) as error:
        return f"holds {value!r}, which a JSON column cannot hold: {error}"
    if not same(back, value):
        return f"holds {value!r}, which its JSON column would give back as {back!r}"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return f"holds {value!r}, which is not valid Unicode text (a lone surrogate)"
    kind = type(value)
    number = kind in (float, Decimal) or (kind is int and not -(2**63) <= value < 2**63)
    if dialect.name == "sqlite" and number:
        return (
            f"is the number document {value!r}, which a JSON column of SQLite (NUMERIC "
            "affinity) stores as a number and gives back rounded or as another type; "
            "wrap it in a list or object, or write it as an integer of 64 bits"
        )
    if isinstance(column.type, postgresql.JSONB):
        if "\\u0000" in text:
            return "holds a NUL character, which PostgreSQL's JSONB cannot hold"
        if _has_positive_exponent(value):
            return (
                f"holds {value!r}, a number JSONB writes out in full and gives back as an "
                "integer; write it as an integer or a Decimal without an exponent"
            )
    return None


def _has_positive_exponent(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return "e+" in repr(value)
    if kind is Decimal:
        return "E+" in str(value)
    if kind is list:
        return any(_has_positive_exponent(item) for item in value)
    if kind is dict:
        return any(_has_positive_exponent(item) for item in value.values())
    return False
