"""The one JSON encoding of values at the ledger's edge: what `--json` prints, import lines and
`--set` read, and (later) the HTTP API speaks — so that whatever is printed reads back as the
same value, type included.

Plain JSON stands for itself: text, booleans, ``null`` (SQL NULL, or a missing value), lists,
objects, integers within 64 bits and floats. Every other value is a one-key object whose key
starts with ``$``::

    {"$decimal": "1.10"}          Decimal, every digit kept
    {"$int": "184467440737095516160"}   an integer beyond 64 bits (JavaScript-safe as text)
    {"$date": "2026-01-31"}       {"$time": "09:30:00"}
    {"$datetime": "2026-01-31T09:30:00+02:00"}   offset kept; naive when written naive
    {"$uuid": "…"}                {"$bytes": "<base64>"}
    {"$jsonnull": true}           the JSON document null in a JSON column (not SQL NULL)
    {"$absent": true}             a field that does not exist (in before/after and expectations)
    {"$object": {…}}              an object of the user's own with a key starting with "$"

A user object with a ``$`` key is always written wrapped, so it is never taken for a tag; a
one-key ``$`` object that is not a known tag is refused as input, since it is most likely a
misspelt tag.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from uuid import UUID

from ledger.errors import InvalidValue
from ledger.values import ABSENT, JSON_NULL, check_value, parse_json

_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1


def encode_value(value: Any) -> Any:
    """The edge encoding of a stored value: plain JSON that orjson can write."""
    kind = type(value)
    if kind is str or kind is bool or value is None or kind is float:
        return value
    if kind is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else {"$int": str(value)}
    if kind is dict:
        encoded = {key: encode_value(item) for key, item in value.items()}
        if any(key.startswith("$") for key in value):
            return {"$object": encoded}
        return encoded
    if kind is list or kind is tuple:
        return [encode_value(item) for item in value]
    if value is ABSENT:
        return {"$absent": True}
    if value is JSON_NULL:
        return {"$jsonnull": True}
    if isinstance(value, datetime):  # before date: a datetime is a date
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, time):
        return {"$time": value.isoformat()}
    if kind is Decimal:
        return {"$decimal": str(value)}
    if kind is UUID:
        return {"$uuid": str(value)}
    if kind is bytes:
        return {"$bytes": base64.b64encode(value).decode()}
    raise InvalidValue(f"a {kind.__name__} has no encoding at the ledger's edge")


def _flag(name: str) -> Callable[[Any], Any]:
    marker = {"$absent": ABSENT, "$jsonnull": JSON_NULL}[name]

    def decode(data: Any) -> Any:
        if data is not True:
            raise ValueError(f"write {{{name!r}: true}}")
        return marker

    return decode


def _text(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    def decode(data: Any) -> Any:
        if type(data) is not str:
            raise ValueError("the value must be text")
        return parse(data)

    return decode


def _integer(text: str) -> int:
    if not text.lstrip("-").isdigit():
        raise ValueError("the value must be the integer's digits")
    return int(text)


def _decimal(text: str) -> Decimal:
    number = Decimal(text)
    if not number.is_finite():
        raise ValueError("the value must be a finite number")
    return number


_TAGS: Final[dict[str, Callable[[Any], Any]]] = {
    "$int": _text(_integer),
    "$decimal": _text(_decimal),
    "$date": _text(date.fromisoformat),
    "$time": _text(time.fromisoformat),
    "$datetime": _text(datetime.fromisoformat),
    "$uuid": _text(UUID),
    "$bytes": _text(lambda text: base64.b64decode(text, validate=True)),
    "$absent": _flag("$absent"),
    "$jsonnull": _flag("$jsonnull"),
}


def decode_value(data: Any, where: str = "value") -> Any:
    """The value an edge encoding stands for (the inverse of `encode_value`); `where` names
    the input in errors."""
    kind = type(data)
    if kind is list:
        return [decode_value(item, f"{where}[{index}]") for index, item in enumerate(data)]
    if kind is not dict:
        return data
    if len(data) == 1:
        ((tag, inner),) = data.items()
        if tag == "$object":
            if type(inner) is not dict:
                raise InvalidValue(f"{where}: $object must wrap an object", field=where)
            return {key: decode_value(item, f"{where}.{key}") for key, item in inner.items()}
        if tag.startswith("$"):
            decode = _TAGS.get(tag)
            if decode is None:
                raise InvalidValue(
                    f"{where}: {tag!r} is not a value tag (known: {', '.join(sorted(_TAGS))}, "
                    "$object); wrap an object of your own whose key starts with '$' as "
                    '{"$object": {...}}',
                    field=where,
                )
            try:
                return decode(inner)
            except (ValueError, TypeError, InvalidOperation, binascii.Error) as error:
                raise InvalidValue(
                    f"{where}: {inner!r} is not a valid {tag} ({error})", field=where
                ) from None
    return {key: decode_value(item, f"{where}.{key}") for key, item in data.items()}


def parse_value(text: str | bytes, where: str = "input") -> Any:
    """Strict JSON text in the edge encoding, decoded and checked to be storable exactly."""
    value = decode_value(parse_json(text, where), where)
    check_value(value, where, absent_fields=True)
    return value
