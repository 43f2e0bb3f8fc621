"""JSON Lines files: one JSON object per line, key field(s) included.

Lines are read with `ledger.values.parse_json`: numbers exact (integers of any size; a number
with a fraction is a float when the float prints back as the same digits, else a Decimal with
every digit), duplicate keys refused, absent and null kept apart (``unset`` removes a field).
Plain JSON has no dates and no decimal type, so a date is refused (write its ISO text), and a
Decimal is written as a JSON number only if it reads back as a Decimal: one with more digits
than a float holds (as every Decimal that came from `parse_json` has) round-trips exactly;
``Decimal("1.5")`` would read back as the float 1.5 and is refused. A record is refused, too,
beyond `parse_json`'s limits (1 MiB, 32 levels), since it could not be read back. Key fields
hold text (an integer key is read as its digits and kept as written). Lines of untouched records
are copied byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from adapters.files.table import Row, Table, Unfit
from adapters.jsontext import NotJson, exact_json
from ledger.errors import AdapterError, InvalidValue
from ledger.ports import Record, join_key, key_text
from ledger.values import parse_json


@dataclass(frozen=True)
class JsonLinesCollection:
    """One JSON Lines file: its name and key field(s)."""

    file: str | None = None
    key: str | tuple[str, ...] = "id"
    parents: Mapping[str, str] = field(default_factory=dict)  # field -> parent collection

    def table(self, path: Path) -> Table:
        return JsonLinesTable(self, path)


class JsonLinesTable(Table):
    """One pass over a JSON Lines file."""

    can_unset = True

    def __init__(self, spec: JsonLinesCollection, path: Path):
        super().__init__(path, spec.key)
        with suppress(FileNotFoundError):
            self._source = open(path, "rb")  # noqa: SIM115 - closed on exit

    def rows(self) -> Iterator[Row]:
        if self._source is None:
            return
        for line, raw in enumerate(self._source, 1):
            if not raw.strip():
                continue
            where = f"{self.path} line {line}"
            try:
                parsed = parse_json(raw, where)
            except InvalidValue as error:
                raise AdapterError(f"{error}; fix or remove the line") from None
            if type(parsed) is not dict:
                raise AdapterError(f"{where} is not a JSON object; fix or remove the line")
            parts = []
            for name in self.keys:
                text = key_text(parsed.get(name))
                if text is None:
                    raise AdapterError(
                        f"{where}: key field {name!r} is {parsed.get(name, 'missing')!r}; "
                        "every line needs its key as text"
                    )
                parts.append(text)
            if not raw.endswith(b"\n"):
                raw += b"\n"
            yield Row(join_key(parts), line, raw, parsed)

    def record(self, row: Row) -> Record:
        return {name: value for name, value in row.parsed.items() if name not in self.keys}

    def encode(self, key: str, parts: list[str], record: Record, old: Row | None) -> Any:
        if old is not None:
            head = {name: old.parsed[name] for name in self.keys}  # kept as written
        else:
            head = dict(zip(self.keys, parts, strict=True))
        try:
            text = exact_json({**head, **record})
        except NotJson as error:
            field = error.path[0] if error.path else None
            raise Unfit(field, f"{self.path.name} record {key!r}: {error}") from None
        return text.encode("utf-8") + b"\n"

    def start(self, out: IO[bytes]) -> Callable[[Any], None]:
        def put(raw: Any) -> None:
            out.write(raw)

        return put
