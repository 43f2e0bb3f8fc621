"""CSV files: cells as text, typed by the collection's declared columns.

A CSV cell is text. A `CsvCollection` declares its columns and their types (``{"score": "int",
"amount": "decimal", "signed_up": "date", "active": "bool"}``): ``text`` (the default), ``int``,
``float``, ``decimal``, ``date`` and ``datetime`` (ISO 8601, offsets kept), ``bool``
(``true``/``false``) and ``json`` (strict JSON, as in JSON Lines, `adapters.files.jsonl_table`;
a ``null`` cell is the document null, `JSON_NULL`, kept apart from an empty cell). An empty cell
is null (``None``) in every column. CSV cannot tell an empty string from null, so a text
column's empty cell reads as null and writing ``""`` is refused, unless the collection says
``empty="text"``: then empty cells read as ``""`` and writing null to a text column is refused.
CSV has no absent field: every column exists in every record, so ``unset`` is refused (write
``None`` instead), a created record's missing columns are left empty, and a field that is not a
column is refused. Key cells are text. A value is written only if it reads back the same
(`ledger.values.same`): a value of the wrong type (``"12"`` or ``12.0`` for an int column, ``3``
for a float column) is a ``failed`` result naming the record, the field and the column type, and
nothing of that write is applied. An existing file's header decides its columns; a new file gets
the key columns, then the declared columns. A UTF-8 byte order mark (as Excel writes) is kept; a
rewrite writes every row with the csv module's defaults (CRLF line ends, quotes only where
needed), cell texts unchanged.
"""

from __future__ import annotations

import codecs
import csv
import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

from adapters.files.table import Row, Table, Unfit
from adapters.jsontext import exact_json
from ledger.errors import AdapterError, ConfigurationError, InvalidValue
from ledger.ports import Record, join_key
from ledger.values import JSON_NULL, parse_json, same

COLUMN_TYPES = ("text", "int", "float", "decimal", "date", "datetime", "bool", "json")


@dataclass(frozen=True)
class CsvCollection:
    """One CSV file: its name, key column(s), declared columns with their types, and how an
    empty text cell reads (``"null"`` or ``"text"``; see the module docstring)."""

    file: str | None = None
    key: str | tuple[str, ...] = "id"
    columns: Mapping[str, str] = field(default_factory=dict)
    empty: Literal["null", "text"] = "null"
    delimiter: str = ","
    parents: Mapping[str, str] = field(default_factory=dict)  # field -> parent collection

    def __post_init__(self) -> None:
        for column, kind in self.columns.items():
            if kind not in COLUMN_TYPES:
                raise ConfigurationError(
                    f"columns.{column}: unknown type {kind!r}; use one of {', '.join(COLUMN_TYPES)}"
                )
        if self.empty not in ("null", "text"):
            raise ConfigurationError(f"empty: {self.empty!r} must be 'null' or 'text'")

    def table(self, path: Path) -> Table:
        return CsvTable(self, path)


_INT = re.compile(r"[+-]?[0-9]+")
_TYPES: dict[str, Any] = {  # Any: so that `type(v) is _TYPES[k]` does not narrow v
    "text": str,
    "int": int,
    "float": float,
    "decimal": Decimal,
    "date": date,
    "datetime": datetime,
    "bool": bool,
}


class CsvTable(Table):
    """One pass over a CSV file, its header deciding its columns."""

    can_unset = False

    def __init__(self, spec: CsvCollection, path: Path):
        super().__init__(path, spec.key)
        self.spec = spec
        self.bom = False
        try:
            header = self._open_header()
        except BaseException:
            self.__exit__()
            raise
        if not header:
            header = list(self.keys) + [c for c in spec.columns if c not in self.keys]
        if len(set(header)) != len(header) or any(name not in header for name in self.keys):
            self.__exit__()
            raise AdapterError(
                f"{path}: the header {header} must name each column once, including the key "
                f"column(s) {list(self.keys)}"
            )
        self.header = header
        self.types = {c: spec.columns.get(c, "text") for c in header if c not in self.keys}
        self._key_at = [header.index(name) for name in self.keys]

    def _open_header(self) -> list[str] | None:
        """Open the file and read its header (None if there is no file or it is empty)."""
        try:
            source = open(self.path, newline="", encoding="utf-8")  # noqa: SIM115 - closed on exit
        except FileNotFoundError:
            return None
        self._source = source
        with self._readable():
            if source.read(1) == "\ufeff":
                self.bom = True
            else:
                source.seek(0)
            self._reader = csv.reader(source, delimiter=self.spec.delimiter)
            return next(self._reader, None)

    @contextmanager
    def _readable(self) -> Iterator[None]:
        try:
            yield
        except csv.Error as error:
            raise AdapterError(f"{self.path} line {self._reader.line_num}: {error}") from None
        except UnicodeDecodeError:
            raise AdapterError(f"{self.path} is not UTF-8 text; export it as UTF-8") from None

    def rows(self) -> Iterator[Row]:
        if self._source is None:
            return
        with self._readable():
            for cells in self._reader:
                if not cells:
                    continue  # a blank line
                line = self._reader.line_num
                if len(cells) != len(self.header):
                    raise AdapterError(
                        f"{self.path} line {line}: {len(cells)} cells but the header has "
                        f"{len(self.header)} columns; fix the row"
                    )
                yield Row(join_key([cells[i] for i in self._key_at]), line, cells, cells)

    def record(self, row: Row) -> Record:
        record: Record = {}
        for column, cell in zip(self.header, row.parsed, strict=True):
            kind = self.types.get(column)
            if kind is None:
                continue  # a key column
            try:
                record[column] = decode_cell(cell, kind, self.spec.empty == "text")
            except (ValueError, ArithmeticError, InvalidValue) as error:
                raise AdapterError(
                    f"{self.path} line {row.line}: column {column!r} holds {cell!r}, which is "
                    f"not a {kind} ({error}); fix the cell or the column's type"
                ) from None
        return record

    def encode(self, key: str, parts: list[str], record: Record, old: Row | None) -> Any:
        for name in record:
            if name not in self.types:
                raise Unfit(
                    name,
                    f"{self.path.name} record {key!r}: field {name!r} is not a column "
                    f"(columns: {', '.join(self.header)})",
                )
        cells = dict(zip(self.keys, parts, strict=True))
        for column, kind in self.types.items():
            if column not in record:
                cells[column] = ""  # CSV has no absent field: a missing column is empty
                continue
            value = record[column]
            try:
                cells[column] = encode_cell(value, kind, self.spec.empty == "text")
                cells[column].encode("utf-8")
                if len(cells[column]) > csv.field_size_limit():
                    raise ValueError(
                        f"the csv module reads cells of {csv.field_size_limit()} characters at most"
                    )
            except (ValueError, InvalidValue) as error:
                raise Unfit(
                    column,
                    f"{self.path.name} record {key!r}: field {column!r} is {value!r}, which does "
                    f"not fit the {kind} column: {error}",
                ) from None
        return [cells[column] for column in self.header]

    def start(self, out: IO[bytes]) -> Callable[[Any], None]:
        if self.bom:
            out.write(codecs.BOM_UTF8)
        writer = csv.writer(_Utf8(out), delimiter=self.spec.delimiter)
        writer.writerow(self.header)
        return writer.writerow


class _Utf8:
    """A text sink over a binary file (for csv.writer)."""

    def __init__(self, out: IO[bytes]):
        self.out = out

    def write(self, text: str) -> int:
        return self.out.write(text.encode("utf-8"))


def encode_cell(value: Any, kind: str, empty_text: bool) -> str:
    """The cell for `value` in a `kind` column; ValueError says why it does not fit."""
    text: str
    if value is None:
        if kind == "text" and empty_text:
            raise ValueError("with empty='text' an empty cell reads as '', so null cannot be kept")
        return ""
    if kind == "json":
        text = "null" if value is JSON_NULL else exact_json(value)
    elif type(value) is not _TYPES[kind]:
        raise ValueError(f"a {type(value).__name__} is not a {kind}")
    elif kind == "text":
        if value == "" and not empty_text:
            raise ValueError(
                "CSV cannot tell an empty string from null, and this column reads an empty "
                "cell as null (configure empty='text' to keep empty strings)"
            )
        text = value
    elif kind == "bool":
        text = "true" if value else "false"
    elif kind in ("date", "datetime"):
        text = value.isoformat()
    elif kind == "float":
        text = repr(value)
    else:
        text = str(value)
    back = decode_cell(text, kind, empty_text)
    if not same(back, value):
        raise ValueError(f"it would read back as {back!r}")
    return text


def decode_cell(cell: str, kind: str, empty_text: bool) -> Any:
    if cell == "":
        return "" if kind == "text" and empty_text else None
    if kind == "text":
        return cell
    if kind == "int":
        if not _INT.fullmatch(cell):
            raise ValueError("not an integer")
        return int(cell)
    if kind == "float":
        number = float(cell)
        if not math.isfinite(number):
            raise ValueError("not a finite number")
        return number
    if kind == "decimal":
        exact = Decimal(cell)
        if not exact.is_finite():
            raise ValueError("not a finite number")
        return exact
    if kind == "date":
        return date.fromisoformat(cell)
    if kind == "datetime":
        return datetime.fromisoformat(cell)
    if kind == "bool":
        truth = {"true": True, "false": False}.get(cell.lower())
        if truth is None:
            raise ValueError("not true or false")
        return truth
    document = parse_json(cell, "the cell")
    return JSON_NULL if document is None else document  # apart from an empty cell's None
