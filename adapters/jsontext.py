"""JSON text of a value, exactly: Decimals as numbers with every digit.

The file and SQL adapters write JSON documents themselves rather than through `json.dumps`,
which has no form for a Decimal; each caller checks that the text reads back the same
(`ledger.values.parse_json` and `same`) before anything is written.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ledger.values import JSON_NULL


def json_text(value: Any) -> str:
    """`value` as JSON text, Decimals as numbers with every digit; ValueError if JSON has no
    form for it. (The caller checks that the text reads back the same.)"""
    kind = type(value)
    if value is None:
        return "null"
    if value is JSON_NULL:
        raise ValueError(
            "JSON_NULL is a JSON column's document null, kept apart from SQL NULL; "
            "here JSON's null is None"
        )
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float or kind is Decimal:
        if not (math.isfinite(value) if kind is float else value.is_finite()):
            raise ValueError("JSON has no NaN or infinity; write null or a finite number")
        return repr(value) if kind is float else str(value)
    if kind is str:
        return json.dumps(value, ensure_ascii=False)
    if kind is list:
        return "[" + ", ".join(json_text(item) for item in value) + "]"
    if kind is dict:
        for name in value:
            if type(name) is not str:
                raise ValueError(f"the key {name!r} is not text")
        items = (f"{json.dumps(k, ensure_ascii=False)}: {json_text(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if kind is date or kind is datetime:
        raise ValueError("JSON has no dates; write its ISO text (or use a CSV date column)")
    raise ValueError(f"JSON has no {kind.__name__}")
