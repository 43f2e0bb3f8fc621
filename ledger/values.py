"""Values from external systems: checked before they are stored, so they come back exactly.

The values inside a change (before, after, inputs) come from CRMs, spreadsheets and
SQL tables and may have any shape. The ledger never reinterprets them: a value it
cannot store exactly (NaN, infinity, a non-string key, a cycle, absurd depth or size)
is refused with an error naming where it was, instead of being silently altered.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

from ledger.errors import InvalidValue

MAX_DEPTH: Final = 32
MAX_BYTES: Final = 1 << 20


class _Absent:
    """The state of a field that does not exist, as distinct from a field holding null."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<absent>"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()


class _JsonNull:
    """The JSON document ``null`` held in a JSON column, as distinct from SQL NULL (``None``):
    a rollback must restore the one the record held, and a change must be able to set either."""

    _instance: _JsonNull | None = None

    def __new__(cls) -> _JsonNull:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<json null>"

    def __reduce__(self) -> str:
        return "JSON_NULL"


JSON_NULL: Final = _JsonNull()

_SCALARS = (str, bool, int, type(None), date, datetime, time, UUID, bytes, _JsonNull)


def check_value(value: Any, where: str, *, absent_fields: bool = False) -> None:
    """Refuse a value that could not be stored and read back exactly; `where` names it.
    With ``absent_fields``, a top-level field may be ABSENT (an expectation, not a value)."""
    if absent_fields and isinstance(value, dict):
        value = {key: item for key, item in value.items() if item is not ABSENT}
    if 0 <= _cost(value, 0) <= MAX_BYTES:
        return
    _check(value, where, 0, [MAX_BYTES])  # the same walk, naming where the value is wrong


_PLAIN: Final = frozenset((bool, int, type(None), date, datetime, time, UUID, _JsonNull))


def _cost(value: Any, depth: int) -> int:
    """The size `_check` counts for a value, or -1 where it would refuse it: the common,
    valid case walked once, without building the path of every item (`_check` does that
    when something is wrong, to say where)."""
    kind = type(value)
    if kind is str:
        return len(value) + 2 if _unicode(value) else -1
    if kind is bytes:
        return len(value) + 2
    if kind in _PLAIN:
        return 8
    if kind is dict:
        if value and depth >= MAX_DEPTH:
            return -1
        total = 2
        for key, item in value.items():
            if type(key) is not str or not _unicode(key):
                return -1
            kind = type(item)
            if kind is str:
                if not _unicode(item):
                    return -1
                total += len(key) + len(item) + 5
            elif kind in _PLAIN:
                total += len(key) + 11
            else:
                cost = _cost(item, depth + 1)
                if cost < 0:
                    return -1
                total += len(key) + 3 + cost
        return total
    if kind is list:
        if value and depth >= MAX_DEPTH:
            return -1
        total = 2
        for item in value:
            cost = _cost(item, depth + 1)
            if cost < 0:
                return -1
            total += cost
        return total
    if kind is float:
        return 8 if math.isfinite(value) else -1
    if kind is Decimal:
        return 16 if value.is_finite() else -1
    return -1


def _unicode(text: str) -> bool:
    """Whether every character is a Unicode scalar value: a lone surrogate (which Python
    strings can hold) has no UTF-8 form, so no store, JSON encoder or fingerprint takes it."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _surrogate(text: str) -> str:
    """Where the first lone surrogate is, for the message."""
    at = next(i for i, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF)
    return f"U+{ord(text[at]):04X} at character {at}"


def _check(value: Any, where: str, depth: int, budget: list[int]) -> None:
    if depth > MAX_DEPTH:
        raise InvalidValue(f"{where} is nested deeper than {MAX_DEPTH} levels", field=where)
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            raise InvalidValue(
                f"{where} is {value!r}, which JSON cannot hold; send a finite number or null",
                field=where,
            )
        cost = 8
    elif kind is Decimal:
        if not value.is_finite():
            raise InvalidValue(
                f"{where} is Decimal({str(value)!r}); send a finite number or null", field=where
            )
        cost = 16
    elif kind is str:
        if not _unicode(value):
            raise InvalidValue(
                f"{where} is text that is not valid Unicode (it holds a lone surrogate, "
                f"{_surrogate(value)}), which no UTF-8 store can hold; send UTF-8 text",
                field=where,
            )
        cost = len(value) + 2
    elif kind is bytes:
        cost = len(value) + 2
    elif kind in _SCALARS:
        cost = 8
    elif kind is list:
        cost = 2
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]", depth + 1, budget)
    elif kind is dict:
        cost = 2
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidValue(
                    f"{where} has a key {key!r} of type {type(key).__name__}; keys must be text",
                    field=where,
                )
            if not _unicode(key):
                raise InvalidValue(
                    f"{where} has a key {key!r} that is not valid Unicode (a lone surrogate, "
                    f"{_surrogate(key)}); keys must be UTF-8 text",
                    field=where,
                )
            cost += len(key) + 3
            _check(item, f"{where}.{key}", depth + 1, budget)
    else:
        raise InvalidValue(
            f"{where} is a {kind.__name__}, which the ledger cannot store exactly; "
            "use text, numbers, booleans, null, dates, lists or objects",
            field=where,
        )
    budget[0] -= cost
    if budget[0] < 0:
        raise InvalidValue(f"{where} makes the change larger than {MAX_BYTES} bytes", field=where)


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type all the way down: 1, 1.0 and True are different values."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def parse_json(text: str | bytes, where: str = "input") -> Any:
    """Parse JSON input strictly: duplicate keys, NaN and Infinity are refused, numbers kept exact.

    A number with a fraction or exponent becomes a float when the float prints back as
    the same decimal value, otherwise a Decimal holding every digit as written.
    """
    try:
        value = json.loads(
            text,
            object_pairs_hook=_refuse_duplicate_keys,
            parse_float=_exact_number,
            parse_constant=_refuse_constant,
        )
    except _InputRefused as refused:
        raise InvalidValue(f"{where}: {refused}", field=where) from None
    except RecursionError:
        raise InvalidValue(f"{where} is nested too deeply", field=where) from None
    except json.JSONDecodeError as error:
        raise InvalidValue(
            f"{where} is not valid JSON ({error.msg} at column {error.colno})", field=where
        ) from None
    except UnicodeDecodeError as error:
        raise InvalidValue(
            f"{where} is not valid UTF-8 (byte {error.start}); save it as UTF-8", field=where
        ) from None
    check_value(value, where)
    return value


class _InputRefused(ValueError):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _InputRefused(f"key {key!r} appears twice in one object")
        result[key] = value
    return result


def _exact_number(text: str) -> float | Decimal:
    exact = Decimal(text)
    as_float = float(text)
    if math.isfinite(as_float) and Decimal(repr(as_float)) == exact:
        return as_float
    return exact


def _refuse_constant(name: str) -> None:
    raise _InputRefused(f"{name} is not a number JSON can hold; send a finite number or null")
