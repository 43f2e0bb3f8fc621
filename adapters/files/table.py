"""One pass over a collection's file: the rows it streams, and how a record becomes a row again.

`Table` is what the CSV and JSON Lines formats (`adapters.files.csv_table`,
`adapters.files.jsonl_table`) share: a file opened (or nothing, if it does not exist yet), its
rows streamed as `Row` (key text, line, raw text to copy back untouched, parsed form), a row
read as a record, a record encoded as a row. `Unfit` is a value the file cannot hold so that
it reads back the same, naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from ledger.ports import Record, join_key, split_key


class Row(NamedTuple):
    """One row as read: its key text, line number, raw form and parsed form."""

    key: str
    line: int
    raw: Any  # written back as is when the record is untouched
    parsed: Any  # CSV: the cells; JSON Lines: the object


class Unfit(Exception):
    """A value the file cannot hold so that it reads back the same; names the field."""

    def __init__(self, field: str | None, message: str):
        self.field = field
        super().__init__(message)


class Table:
    """One pass over a collection's file (or over nothing, if it does not exist yet)."""

    keys: tuple[str, ...]
    can_unset: bool

    def __init__(self, path: Path, key: str | tuple[str, ...]):
        self.path = path
        self.keys = (key,) if isinstance(key, str) else tuple(key)
        self._source: IO[Any] | None = None

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._source is not None:
            self._source.close()

    def parts(self, key: str) -> list[str]:
        """The key's parts, one per key column; refused unless `key` is their one key text."""
        parts = split_key(key, len(self.keys))
        if len(parts) != len(self.keys) or join_key(parts) != key:
            raise Unfit(
                None,
                f"{self.path.name}: key {key!r} is not the key text of {len(self.keys)} "
                f"part(s) for key columns {list(self.keys)} (each part's '%' written %25 "
                "and, in a composite key, '/' written %2F: see ledger/keys.py)",
            )
        return parts

    def rows(self) -> Iterator[Row]:
        raise NotImplementedError

    def record(self, row: Row) -> Record:
        raise NotImplementedError

    def encode(self, key: str, parts: list[str], record: Record, old: Row | None) -> Any:
        raise NotImplementedError

    def start(self, out: IO[bytes]) -> Callable[[Any], None]:
        """Begin a file (header, if any) on `out`; the function that writes one raw row."""
        raise NotImplementedError
