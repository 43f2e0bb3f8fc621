"""Points in the ledger's history: a time, a log position, a named checkpoint or a version."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from ledger.errors import InvalidChange

KINDS = ("time", "effective", "position", "checkpoint", "version")
_PREFIXED = re.compile(r"^(time|effective|position|checkpoint|version):(.+)$")


def parse_time(text: str, field: str = "time") -> datetime:
    """An ISO 8601 timestamp with a timezone; a naive one is refused rather than guessed."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise InvalidChange(
            f"{field} {text!r} is not an ISO 8601 time (e.g. 2026-11-24T09:12:00Z)", field=field
        ) from None
    if moment.tzinfo is None:
        raise InvalidChange(
            f"{field} {text!r} has no timezone; add Z or an offset such as +01:00", field=field
        )
    return moment


@dataclass(frozen=True)
class Point:
    """Where to look: ``kind`` is one of time, effective, position, checkpoint, version."""

    kind: str
    value: datetime | int | str

    @classmethod
    def parse(cls, text: str) -> Point:
        """``time:T``, ``effective:T``, ``position:N``, ``checkpoint:NAME``, ``version:N``;
        a bare ISO time means ``time:``, any other bare word a checkpoint name."""
        match = _PREFIXED.match(text)
        if match:
            kind, rest = match.groups()
        elif looks_like_time(text):
            kind, rest = "time", text
        else:
            kind, rest = "checkpoint", text
        if kind in ("time", "effective"):
            return cls(kind, parse_time(rest, field="--at"))
        if kind in ("position", "version"):
            if not rest.isdigit():
                raise InvalidChange(f"{kind} {rest!r} is not a whole number", field="--at")
            return cls(kind, int(rest))
        return cls(kind, rest)

    def __str__(self) -> str:
        value = self.value.isoformat() if isinstance(self.value, datetime) else self.value
        return f"{self.kind}:{value}"


def looks_like_time(text: str) -> bool:
    return bool(re.match(r"^\d{4}-\d{2}-\d{2}", text))
