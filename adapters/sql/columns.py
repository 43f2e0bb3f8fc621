"""Column types and value fitness: what a SQL column holds, and whether a value fits it exactly.

`normalize` converts what JSON cannot say to the column's type where nothing is lost
(`converted`); `unfit` says why a value would be refused, rounded, truncated or read back as
something else (an integer beyond the column's range, a Decimal beyond NUMERIC(p, s), text
beyond VARCHAR(n), an offset the column drops or invents, a JSON document that would come back
otherwise), so the write fails naming the field before anything of its chunk is sent. JSON
columns are read and written as text (`document`, `json_param`), so SQL NULL and the JSON
document ``null`` stay apart and numbers keep every digit.
"""

from __future__ import annotations

import math
import struct
from datetime import UTC, date, datetime, time
from decimal import Decimal, localcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from adapters.jsontext import NotJson, exact_json, json_text
from ledger.errors import AdapterError, InvalidValue
from ledger.values import ABSENT, JSON_NULL, parse_json


def python_type(column: sa.Column[Any]) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:
        return None


def is_json(column: sa.Column[Any]) -> bool:
    return isinstance(column.type, sa.JSON)


def exact_text(column: sa.Column[Any]) -> bool:
    """Whether ``CAST(column AS TEXT)`` is Python's ``str`` of its value: integers and text
    (not CHAR(n), which PostgreSQL pads)."""
    kind = python_type(column)
    return kind is int or (kind is str and not isinstance(column.type, sa.CHAR))


def from_text(column: sa.Column[Any], text: str, record: str) -> Any:
    kind = python_type(column)
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise AdapterError(f"{record}: {column.name} takes whole numbers") from None
    return text


def document(text: str | float | None, where: str) -> Any:
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


def json_param(value: Any) -> str | None:
    """A JSON column's document as text for the database: None is SQL NULL, JSON_NULL the
    document ``null``."""
    if value is None:
        return None
    return "null" if value is JSON_NULL else json_text(value)


def converted(kind: type | None, value: Any) -> Any:
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


def unfit(column: sa.Column[Any], value: Any, dialect: sa.Dialect) -> str | None:
    """Why the column cannot hold `value` exactly (the database would refuse it, round it,
    truncate it or give back something else), or None."""
    if value is None:
        return None if column.nullable else f"is NOT NULL in {column.table.name}"
    if is_json(column):
        return None if value is JSON_NULL else _unfit_document(column, value, dialect)
    if value is JSON_NULL:
        return "is the JSON document null, but its column is not JSON; write null (SQL NULL)"
    kind = python_type(column)
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
    """A JSON column's document must read back the same (`exact_json`); a number document
    alone must also survive SQLite's NUMERIC affinity, and PostgreSQL's JSONB writes a
    number's exponent out (1e+16 comes back as an integer) and holds no NUL character."""
    try:
        text = exact_json(value)
    except NotJson as error:
        if error.back is not ABSENT and not error.path:
            return f"holds {value!r}, which its JSON column would give back as {error.back!r}"
        return f"holds {value!r}, which a JSON column cannot hold: {error}"
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
