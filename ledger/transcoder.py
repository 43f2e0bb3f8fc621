"""An orjson transcoder that gives back exactly what it was given.

orjson alone would turn UUIDs and datetimes into strings, tuples into lists, NaN into
null, and refuse integers beyond 64 bits. This transcoder keeps the eventsourcing
library's tagged format (``{"_type_": name, "_data_": ...}``, so its contract tests
apply) and makes it unambiguous: every non-JSON type is tagged, and a stored dict that
happens to look like a tag is itself wrapped, so no external value is ever mistaken
for one.
"""

from __future__ import annotations

import base64
import math
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

import orjson
from eventsourcing.persistence import Transcoder, Transcoding, TranscodingNotRegisteredError

from ledger.errors import InvalidValue
from ledger.values import ABSENT, JSON_NULL

_INT64_MIN: Final = -(1 << 63)
_UINT64_MAX: Final = (1 << 64) - 1
_TAG_KEYS: Final = frozenset(("_type_", "_data_"))


class _Tagged(Transcoding):
    """A transcoding written as a tiny class: type, name and two conversions."""

    def __init__(self, type_: type, name: str, encode: Any, decode: Any):
        self.type = type_
        self.name = name
        self._encode = encode
        self._decode = decode

    def encode(self, obj: Any) -> Any:
        return self._encode(obj)

    def decode(self, data: Any) -> Any:
        return self._decode(data)


BUILTIN_TRANSCODINGS: Final = (
    _Tagged(UUID, "uuid_hex", lambda u: u.hex, UUID),
    _Tagged(Decimal, "decimal_str", str, Decimal),
    _Tagged(datetime, "datetime_iso", datetime.isoformat, datetime.fromisoformat),
    _Tagged(date, "date_iso", date.isoformat, date.fromisoformat),
    _Tagged(time, "time_iso", time.isoformat, time.fromisoformat),
    _Tagged(bytes, "bytes_b64", lambda b: base64.b64encode(b).decode(), base64.b64decode),
    _Tagged(int, "int_str", str, int),
    _Tagged(tuple, "tuple_as_list", list, tuple),
    _Tagged(dict, "dict", lambda d: d, lambda d: d),
    # A compare-and-set expectation that a field does not exist (never an external value).
    _Tagged(type(ABSENT), "absent", lambda _: None, lambda _: ABSENT),
    # The JSON document null of a JSON column, kept apart from SQL NULL (None).
    _Tagged(type(JSON_NULL), "json_null", lambda _: None, lambda _: JSON_NULL),
)


# Every tag's key, as orjson writes it. A quote inside a JSON string is escaped, so these bytes
# occur only as a key (or as the whole text of a string value, which just costs the slow path):
# JSON without them holds no tag, and parses to the very value that was encoded.
_TAG = b'"_type_"'


class OrjsonTranscoder(Transcoder):
    """Encodes event state with orjson, faithfully for every type it knows."""

    def __init__(self) -> None:
        self.types: dict[type, Transcoding] = {}
        self.names: dict[str, Transcoding] = {}
        for transcoding in BUILTIN_TRANSCODINGS:
            self.register(transcoding)

    def register(self, transcoding: Transcoding) -> None:
        """Teach the transcoder another type (the library's Transcoding interface)."""
        self.types[transcoding.type] = transcoding
        self.names[transcoding.name] = transcoding

    def encode(self, obj: Any) -> bytes:
        # orjson (3.12 on) hands back its whole working buffer, at least 4 KiB, whatever
        # the length of the JSON; joining copies it into a bytes object of the right size,
        # so a batch of stored events does not hold several times its size in memory.
        return b"".join((orjson.dumps(self._to_json(obj)), b""))

    def decode(self, data: bytes) -> Any:
        parsed = orjson.loads(data)
        if _TAG not in data:
            return parsed  # no tag anywhere: the parsed JSON is the value
        return self._from_json(parsed)

    def decode_fields(self, data: bytes, names: tuple[str, ...]) -> tuple[Any, ...]:
        """Some fields of an encoded dict, each exactly as `decode` would give it back,
        without decoding the other fields."""
        parsed = orjson.loads(data)
        if _TAG not in data and type(parsed) is dict:
            return tuple(parsed[name] for name in names)
        if type(parsed) is not dict or parsed.keys() == _TAG_KEYS:
            decoded = self._from_json(parsed)
            return tuple(decoded[name] for name in names)
        fields = [parsed[name] for name in names]
        # Every tag writes the key `"_type_"` once (a string equal to it only adds to the
        # count): a state whose one tag is its timestamp's (every stored event has one) holds
        # none in the fields asked for, plain JSON already; not walking them is most of the
        # decode of a collection read.
        if "timestamp" not in names and data.count(_TAG) == 1:
            stamp = parsed.get("timestamp")
            if type(stamp) is dict and stamp.keys() == _TAG_KEYS and type(stamp["_data_"]) is str:
                return tuple(fields)
        for index, value in enumerate(fields):
            kind = type(value)
            if kind is dict or kind is list:
                fields[index] = self._from_json(value)
        return tuple(fields)

    def _to_json(self, obj: Any) -> Any:
        """What orjson should write for a value: the value itself when it is already plain
        JSON (the common case, so nothing is copied), else a copy with tags where needed."""
        kind = type(obj)
        if kind is dict:
            return self._dict_to_json(obj)
        if kind is list:
            return self._list_to_json(obj)
        if kind is str or kind is bool or obj is None:
            return obj
        if kind is int:
            if _INT64_MIN <= obj <= _UINT64_MAX:
                return obj
            return {"_type_": "int_str", "_data_": str(obj)}
        if kind is float:
            if not math.isfinite(obj):
                raise InvalidValue(f"{obj!r} cannot be stored exactly; use null or a number")
            return obj
        transcoding = self.types.get(kind) or self._clock_type(obj)
        if transcoding is None:
            raise TranscodingNotRegisteredError(
                f"Object of type {kind} is not serializable. Please define and register "
                "a custom transcoding for this type."
            )
        return {"_type_": transcoding.name, "_data_": self._to_json(transcoding.encode(obj))}

    def _dict_to_json(self, obj: dict[Any, Any]) -> dict[str, Any]:
        if len(obj) == 2 and obj.keys() == _TAG_KEYS:
            return {"_type_": "dict", "_data_": self._rebuilt(obj)}
        copy: dict[str, Any] | None = None
        for key, value in obj.items():
            if type(key) is not str:
                return self._rebuilt(obj)
            kind = type(value)
            if kind is str or kind is bool or value is None:
                continue
            if kind is int and _INT64_MIN <= value <= _UINT64_MAX:
                continue
            encoded = self._dict_to_json(value) if kind is dict else self._to_json(value)
            if encoded is not value:
                if copy is None:
                    copy = dict(obj)
                copy[key] = encoded
        return obj if copy is None else copy

    def _rebuilt(self, obj: dict[Any, Any]) -> dict[str, Any]:
        return {_text_key(key): self._to_json(value) for key, value in obj.items()}

    def _list_to_json(self, obj: list[Any]) -> list[Any]:
        copy: list[Any] | None = None
        for index, item in enumerate(obj):
            kind = type(item)
            if kind is str or kind is bool or item is None:
                continue
            if kind is int and _INT64_MIN <= item <= _UINT64_MAX:
                continue
            encoded = self._to_json(item)
            if encoded is not item:
                if copy is None:
                    copy = list(obj)
                copy[index] = encoded
        return obj if copy is None else copy

    def _clock_type(self, obj: Any) -> Transcoding | None:
        """Subclasses of datetime/date/time (e.g. freezegun's) are stored as the base type.

        The classes are read from the registered transcodings, not module globals, because
        freezegun swaps module globals that name the real classes while time is frozen."""
        for name in ("datetime_iso", "date_iso", "time_iso"):
            transcoding = self.names[name]
            if isinstance(obj, transcoding.type):
                return transcoding
        return None

    def _from_json(self, data: Any) -> Any:
        """The value stored as freshly parsed JSON: tags are replaced in place, since
        nothing else holds the parsed containers, and untagged ones are kept as they are."""
        kind = type(data)
        if kind is list:
            for index, item in enumerate(data):
                kind = type(item)
                if kind is dict or kind is list:
                    data[index] = self._from_json(item)
            return data
        if kind is not dict:
            return data
        if len(data) == 2 and data.keys() == _TAG_KEYS:
            name = data["_type_"]
            transcoding = self.names.get(name) if type(name) is str else None
            if transcoding is None:
                raise TranscodingNotRegisteredError(
                    f"Data serialized with name {name!r} is not deserializable. "
                    "Please register a custom transcoding for this type."
                )
            if name == "dict":
                return self._untagged(data["_data_"])
            return transcoding.decode(self._from_json(data["_data_"]))
        return self._untagged(data)

    def _untagged(self, data: dict[str, Any]) -> dict[str, Any]:
        for key, value in data.items():
            kind = type(value)
            if kind is dict:
                if len(value) == 2 and value.keys() == _TAG_KEYS:
                    data[key] = self._from_json(value)  # an existing key: same size
                else:
                    self._untagged(value)
            elif kind is list:
                self._from_json(value)
        return data


def _text_key(key: Any) -> str:
    if type(key) is str:
        return key
    if isinstance(key, str):
        return str(key)  # a str subclass (e.g. SQLAlchemy's quoted_name) is stored as text
    raise InvalidValue(f"key {key!r} of type {type(key).__name__} cannot be stored; keys are text")
