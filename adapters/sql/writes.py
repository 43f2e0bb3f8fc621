"""Compare-and-set writes of one chunk to a SQL table, in the caller's transaction.

The chunk's rows are read under the write lock (`Rows.read` with ``lock``), each write is
compared (`check_expected`) and its values checked to fit their columns (`columns.unfit`), and
what passes runs as ``executemany`` groups of writes of the same shape. Every UPDATE or DELETE
must change exactly one row per write (the row count, in the same transaction); if a group hits
a constraint or its count is wrong, it is redone row by row inside savepoints so that exactly
the offending rows fail, with the database's own reason (SQLite's bare "FOREIGN KEY constraint
failed" completed with the field, the value and the missing parent or remaining children).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from adapters.sql.columns import is_json, json_param, unfit
from adapters.sql.reads import Rows
from adapters.sql.schema import OpenTable
from ledger.ports import Record, Write, WriteResult, check_expected


def write_chunk(connection: Connection, rows: Rows, writes: Sequence[Write]) -> list[WriteResult]:
    """Apply `writes` in `connection`'s transaction; one result per write, in order."""
    opened = rows.opened
    results: list[WriteResult | None] = [None] * len(writes)
    current = rows.read(connection, [w.key for w in writes], lock=True)
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for index, write in enumerate(writes):
        before = current.get(write.key)
        refused = check_expected(write.key, write, before) or _check_values(opened, write)
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
        _apply_group(connection, opened, operation, writes, indexes, results)
    return [result for result in results if result is not None]


def _check_values(opened: OpenTable, write: Write) -> WriteResult | None:
    record, table = opened.record(write.key), opened.table
    if write.unset:
        return WriteResult(
            write.key,
            "failed",
            field=write.unset[0],
            error=f"{record}: SQL columns cannot be absent; "
            f"set {write.unset[0]!r} to null instead of unsetting it",
        )
    for name, value in write.values.items():
        if name not in table.c or name in opened.key:
            reason = "is not a column" if name not in table.c else "is part of the key"
            return WriteResult(
                write.key,
                "failed",
                field=name,
                error=f"{record}: field {name!r} {reason} of {table.name}",
            )
        wrong = unfit(table.c[name], value, opened.dialect)
        if wrong:
            return WriteResult(
                write.key, "failed", field=name, error=f"{record}: field {name!r} {wrong}"
            )
    return None


def _apply_group(
    connection: Connection,
    opened: OpenTable,
    operation: str,
    writes: Sequence[Write],
    indexes: list[int],
    results: list[WriteResult | None],
) -> None:
    table = opened.table
    statement, rows = _statement(opened, operation, [writes[i] for i in indexes])
    counted = operation != "create"  # an insert adds one row or fails
    if not counted or opened.dialect.supports_sane_multi_rowcount:
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
        record = opened.record(write.key)
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
                f"key {list(opened.key)} unique?)"
            )
            results[index] = WriteResult(write.key, "failed", _before(results[index]), error=error)
        except (sa.exc.IntegrityError, sa.exc.DataError) as error:
            reason = str(error.orig).strip()
            if "FOREIGN KEY" in reason and opened.sqlite:  # SQLite names no key: find it
                key = dict(zip(opened.key, opened.key_values(write.key), strict=True))
                reason += _broken_reference(connection, table, operation, key, write.values)
            results[index] = WriteResult(
                write.key,
                "failed",
                _before(results[index]),
                error=f"{record}: {table.name} refused the {operation}: {reason}",
            )


def _statement(
    opened: OpenTable, operation: str, writes: list[Write]
) -> tuple[Any, list[dict[str, Any]]]:
    """One statement for a group of writes of the same shape, and a row of parameters
    per write (named ``k0…`` for key columns and ``v0…`` for values: column names
    may be anything)."""
    table, key_names = opened.table, opened.key
    value_names = list(writes[0].values)
    rows = []
    for write in writes:
        row = {f"k{i}": v for i, v in enumerate(opened.key_values(write.key))}
        for i, name in enumerate(value_names):
            value = write.values[name]
            row[f"v{i}"] = json_param(value) if is_json(table.c[name]) else value
        rows.append(row)
    values = {
        name: _param(table.c[name], f"v{i}", opened.sqlite) for i, name in enumerate(value_names)
    }
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


def _param(column: sa.Column[Any], name: str, sqlite: bool) -> Any:
    """The bound value for a column: JSON columns take their document as text (cast to
    the column's type where the database needs it), so that None is SQL NULL."""
    if not is_json(column):
        return sa.bindparam(name, type_=column.type)
    text = sa.bindparam(name, type_=sa.Text)
    return text if sqlite else sa.cast(text, column.type)


class _NotOneRow(Exception):
    """A write's statement changed another number of rows than one (rolled back)."""

    def __init__(self, rows: int):
        super().__init__(rows)
        self.rows = rows


def _before(result: WriteResult | None) -> Record | None:
    return result.before if result is not None else None


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
