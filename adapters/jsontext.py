"""JSON text of a value, exactly, and the one check that a value fits JSON.

The SQL (JSON columns), file (JSON Lines, CSV ``json`` columns) and HTTP adapters write JSON
documents themselves rather than through `json.dumps`, which has no form for a Decimal. Every
one of them asks the same question before anything is written: does this value's JSON text
read back (`ledger.values.parse_json`) as this very value (`same`)? `exact_json` answers it,
and `NotJson` names the field (``meta.since``, ``tags[2]``) where the answer is no.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ledger.errors import InvalidValue
from ledger.values import ABSENT, JSON_NULL, parse_json, same


class NotJson(ValueError):
    """A value whose JSON text would not read back as itself. ``path`` names the field inside
    the value (empty: the value itself); ``back`` is what it would read back as (ABSENT when
    there is no JSON text for it at all)."""

    def __init__(self, reason: str, value: Any, *, back: Any = ABSENT) -> None:
        super().__init__(reason)
        self.reason = reason
        self.value = value
        self.back = back
        self.path: list[str] = []

    def inside(self, step: str) -> NotJson:
        """The same refusal, one level further out (``step``: a field name or ``[index]``)."""
        self.path.insert(0, step)
        return self

    @property
    def field(self) -> str:
        """The path as text: ``meta.since``, ``tags[2]`` (empty for the value itself)."""
        text = ""
        for step in self.path:
            text += step if step.startswith("[") or not text else f".{step}"
        return text

    def __str__(self) -> str:
        if not self.path:
            return self.reason
        if self.back is not ABSENT:
            return f"field {self.field!r} is {self.value!r}: {self.reason}"
        return f"field {self.field!r} holds a {type(self.value).__name__} ({self.value!r}): " + (
            self.reason
        )


def json_text(value: Any, *, decimals: bool = True) -> str:
    """`value` as JSON text, Decimals as numbers with every digit (refused with ``decimals``
    off, for a system whose client cannot send them); `NotJson` if JSON has no form for it."""
    kind = type(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is str:
        return json.dumps(value, ensure_ascii=False)
    if kind is float or (kind is Decimal and decimals):
        if not (math.isfinite(value) if kind is float else value.is_finite()):
            raise NotJson("JSON has no NaN or infinity; write null or a finite number", value)
        return repr(value) if kind is float else str(value)
    if kind is list:
        parts = []
        for index, item in enumerate(value):
            try:
                parts.append(json_text(item, decimals=decimals))
            except NotJson as error:
                raise error.inside(f"[{index}]") from None
        return "[" + ", ".join(parts) + "]"
    if kind is dict:
        fields = []
        for name, item in value.items():
            if type(name) is not str:
                raise NotJson(f"the key {name!r} is not text", value)
            try:
                text = json_text(item, decimals=decimals)
                fields.append(f"{json.dumps(name, ensure_ascii=False)}: {text}")
            except NotJson as error:
                raise error.inside(name) from None
        return "{" + ", ".join(fields) + "}"
    raise NotJson(_no_form(value), value)


def exact_json(value: Any, *, decimals: bool = True) -> str:
    """The JSON text of `value`, checked to read back as exactly `value` (Decimals with more
    digits than a float holds do; ``Decimal("1.5")`` comes back as the float 1.5 and does
    not), within `parse_json`'s limits, and valid Unicode; else `NotJson` says why."""
    text = json_text(value, decimals=decimals)
    try:
        back = parse_json(text, "the document")
    except InvalidValue as error:
        raise NotJson(str(error), value) from None
    if not same(back, value):
        raise _first_difference(value, back)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise NotJson("it is not valid Unicode text (a lone surrogate)", value) from None
    return text


def _first_difference(value: Any, back: Any) -> NotJson:
    """Where `value` and what its text reads back as first differ."""
    if type(value) is type(back) is dict and value.keys() == back.keys():
        for name in value:
            if not same(value[name], back[name]):
                return _first_difference(value[name], back[name]).inside(name)
    if type(value) is type(back) is list and len(value) == len(back):
        for index, (item, item_back) in enumerate(zip(value, back, strict=True)):
            if not same(item, item_back):
                return _first_difference(item, item_back).inside(f"[{index}]")
    return NotJson(f"it would read back from JSON as {back!r}", value, back=back)


def _no_form(value: Any) -> str:
    if value is JSON_NULL:
        return (
            "JSON_NULL is a JSON column's document null, kept apart from SQL NULL; "
            "here JSON's null is None"
        )
    if type(value) in (date, datetime):
        return "JSON has no dates; write its ISO text (or use a CSV date column)"
    if type(value) is Decimal:
        return "JSON cannot carry it exactly to this system; convert it to text or a number"
    return f"JSON has no {type(value).__name__}"
