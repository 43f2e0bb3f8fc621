"""The file adapter: spreadsheets exported as CSV, and JSON Lines files, one file per collection.

Each collection is one file in ``directory`` (``contacts.csv`` / ``contacts.jsonl`` unless
configured otherwise) whose key column(s) (``key``, default ``"id"``) identify each row. A
record is the row without its key columns; its key text is `join_key` of its key cell(s)
(``key=("region", "number")`` for a composite key; see `ledger.keys`).

Sorted files, streamed
    The adapter keeps every file sorted by key text (as Python compares str) and writes it
    that way, so `scan` and `read` are one streaming pass whose memory does not grow with
    the file. A file edited by hand into another order (or with a key twice) is detected
    while streaming: an `AdapterError` names the line and says to sort the file, or to call
    `FileAdapter.sort`, which rewrites it in order with an external merge sort.

Atomic writes
    A write holds an exclusive ``fcntl.flock`` on the sidecar ``<file>.lock`` across read,
    compare and replace. It streams the old file into a hidden temporary file in the same
    directory (``.<file>.<pid>.<random>.tmp``), applying the writes for each key as it
    passes (writes are sorted by key, creates are inserted in order), then flushes, fsyncs,
    ``os.replace``-s it onto the file and fsyncs the directory. So a bulk write is one
    rewrite, memory is bounded by the number of writes (not the file), and a crash leaves
    either the old file or the new one, never half of one. Reads only ever open the file
    itself, never a temporary file; a temporary file left by a killed writer is removed by
    the next writer (under the lock). Readers take no lock: ``os.replace`` swaps the file
    whole. A call that applies nothing does not rewrite the file. POSIX only (``fcntl``).

CSV types
    A CSV cell is text. A `CsvCollection` declares its columns and their types
    (``{"score": "int", "amount": "decimal", "signed_up": "date", "active": "bool"}``):
    ``text`` (the default), ``int``, ``float``, ``decimal``, ``date`` and ``datetime``
    (ISO 8601, offsets kept), ``bool`` (``true``/``false``) and ``json`` (strict JSON,
    as in JSON Lines below; a ``null`` cell is the document null, `JSON_NULL`, kept apart
    from an empty cell). An empty cell is null (``None``) in every column. CSV cannot
    tell an empty string from null, so a text column's empty cell reads as null and writing
    ``""`` is refused, unless the collection says ``empty="text"``: then empty cells read
    as ``""`` and writing null to a text column is refused. CSV has no absent field: every
    column exists in every record, so ``unset`` is refused (write ``None`` instead), a
    created record's missing columns are left empty, and a field that is not a column is
    refused. Key cells are text. A value is written only if it reads back the same
    (`ledger.values.same`): a value of the wrong type (``"12"`` or ``12.0`` for an int
    column, ``3`` for a float column) is a ``failed`` result naming the record, the field
    and the column type, and nothing of that write is applied. An existing file's header
    decides its columns; a new file gets the key columns, then the declared columns.
    A UTF-8 byte order mark (as Excel writes) is kept; a rewrite writes every row with the
    csv module's defaults (CRLF line ends, quotes only where needed), cell texts unchanged.

JSON Lines types
    One JSON object per line, key field(s) included, read with `ledger.values.parse_json`:
    numbers exact (integers of any size; a number with a fraction is a float when the
    float prints back as the same digits, else a Decimal with every digit), duplicate
    keys refused, absent and null kept apart (``unset`` removes a field). Plain JSON has
    no dates and no decimal type, so a date is refused (write its ISO text), and a Decimal
    is written as a JSON number only if it reads back as a Decimal: one with more digits
    than a float holds (as every Decimal that came from `parse_json` has) round-trips
    exactly; ``Decimal("1.5")`` would read back as the float 1.5 and is refused. A record
    is refused, too, beyond `parse_json`'s limits (1 MiB, 32 levels), since it could not be
    read back. Key fields hold text (an integer key is read as its digits and kept as
    written). Lines of untouched records are copied byte for byte.

Keys
    A write's values may repeat a key field only with the record's own key: a key never
    changes (delete, then create under the new key). A key must be in its one form
    (`ledger.keys`), or the write fails.
"""

from __future__ import annotations

import codecs
import csv
import fcntl
import heapq
import json
import math
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

from adapters.jsontext import json_text
from ledger.errors import AdapterError, ConfigurationError, InvalidValue
from ledger.ports import (
    Record,
    Relation,
    Write,
    WriteResult,
    apply_write,
    check_expected,
    declared_relations,
    join_key,
    split_key,
)
from ledger.values import JSON_NULL, parse_json, same

COLUMN_TYPES = ("text", "int", "float", "decimal", "date", "datetime", "bool", "json")
SORT_RUN_ROWS = 50_000
"""Rows `FileAdapter.sort` holds in memory at once; longer files are merged from sorted runs."""


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

    def table(self, path: Path) -> _Table:
        return _CsvTable(self, path)


@dataclass(frozen=True)
class JsonLinesCollection:
    """One JSON Lines file: its name and key field(s)."""

    file: str | None = None
    key: str | tuple[str, ...] = "id"
    parents: Mapping[str, str] = field(default_factory=dict)  # field -> parent collection

    def table(self, path: Path) -> _Table:
        return _JsonLinesTable(self, path)


Collection = CsvCollection | JsonLinesCollection


class FileAdapter:
    """Collections kept as CSV or JSON Lines files in one directory (see the module docstring)."""

    def __init__(
        self, system: str, directory: str | os.PathLike[str], collections: Mapping[str, Collection]
    ):
        self.system = system
        self.directory = Path(directory)
        self.collections = dict(collections)

    # -- the Adapter protocol --------------------------------------------------------------

    def read(self, collection: str, keys: Sequence[str]) -> dict[str, Record | None]:
        spec, path = self._locate(collection)
        found: dict[str, Record] = {}
        wanted = set(keys)
        if wanted:
            # The whole file is streamed even past the last wanted key: stopping early would
            # answer None, unnoticed, for a record that a hand edit moved further down.
            with self._os_errors(path), spec.table(path) as table:
                for row in _in_order(table.rows(), path, collection):
                    if row.key in wanted:
                        found[row.key] = table.record(row)
        return {key: dict(found[key]) if key in found else None for key in keys}

    def scan(self, collection: str) -> Iterator[tuple[str, Record]]:
        spec, path = self._locate(collection)
        with self._os_errors(path), spec.table(path) as table:
            for row in _in_order(table.rows(), path, collection):
                yield row.key, table.record(row)

    def write(self, collection: str, writes: Sequence[Write]) -> list[WriteResult]:
        spec, path = self._locate(collection)
        if not writes:
            return []
        pending: dict[str, list[int]] = {}
        for index, write in enumerate(writes):
            pending.setdefault(write.key, []).append(index)
        todo = sorted(pending)
        results: list[WriteResult | None] = [None] * len(writes)
        with self._os_errors(path), self._locked(path):
            _remove_leftovers(path)
            with spec.table(path) as table, _Replacement(path) as out:
                put = table.start(out.file)
                changed = False

                def settle(key: str, row: _Row | None) -> None:
                    nonlocal changed
                    raw, applied = _settle(table, key, row, [(i, writes[i]) for i in pending[key]])
                    for index, result in applied:
                        results[index] = result
                        changed = changed or result.outcome == "applied"
                    if raw is not None:
                        put(raw)

                position = 0
                for row in _in_order(table.rows(), path, collection):
                    while position < len(todo) and todo[position] < row.key:
                        settle(todo[position], None)
                        position += 1
                    if position < len(todo) and todo[position] == row.key:
                        settle(row.key, row)
                        position += 1
                    else:
                        put(row.raw)
                for key in todo[position:]:
                    settle(key, None)
                if changed:
                    out.commit()
        return [result for result in results if result is not None]

    def normalize(self, collection: str, values: Record) -> Record:
        return values  # stored as given

    def assigns_keys(self, collection: str) -> bool:
        return False  # a row is written under the key it is given

    def relations(self, collection: str) -> tuple[Relation, ...]:
        return declared_relations(self.system, self.collections, collection)

    def close(self) -> None:
        """Nothing stays open between calls."""

    # -- repair ----------------------------------------------------------------------------

    def sort(self, collection: str) -> None:
        """Rewrite a file edited by hand into key text order, atomically and under the lock.

        An external merge sort: runs of `SORT_RUN_ROWS` rows are sorted in memory and
        spilled to temporary files, then merged, so memory does not grow with the file.
        Rows are copied as they are; a key that appears twice is refused (nothing changes).
        """
        spec, path = self._locate(collection)
        with self._os_errors(path), self._locked(path), ExitStack() as stack:
            _remove_leftovers(path)
            if not path.exists():
                return
            table = stack.enter_context(spec.table(path))
            spill_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            runs: list[Iterator[_Row]] = []
            batch: list[_Row] = []
            for row in table.rows():
                batch.append(row)
                if len(batch) >= SORT_RUN_ROWS:
                    run_path = spill_dir / f"run{len(runs)}"
                    with open(run_path, "wb") as run_file:
                        put = table.start(run_file)
                        for spilled in sorted(batch, key=_row_key):
                            put(spilled.raw)
                    runs.append(stack.enter_context(spec.table(run_path)).rows())
                    batch = []
            runs.append(iter(sorted(batch, key=_row_key)))
            out = stack.enter_context(_Replacement(path))
            put = table.start(out.file)
            previous: str | None = None
            for row in heapq.merge(*runs, key=_row_key):
                if row.key == previous:
                    raise AdapterError(
                        f"{path}: key {row.key!r} appears twice; remove one of its rows, "
                        "then sort again"
                    )
                put(row.raw)
                previous = row.key
            out.commit()

    # -- plumbing --------------------------------------------------------------------------

    def _locate(self, collection: str) -> tuple[Collection, Path]:
        spec = self.collections.get(collection)
        if spec is None:
            raise AdapterError(
                f"{self.system}: no collection {collection!r} is configured "
                f"(configured: {', '.join(sorted(self.collections)) or 'none'})"
            )
        suffix = ".csv" if isinstance(spec, CsvCollection) else ".jsonl"
        return spec, self.directory / (spec.file or collection + suffix)

    @contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        """Hold the exclusive lock of `path` (flock on the sidecar ``<file>.lock``, which is
        never deleted: deleting a lock file lets two writers lock different files)."""
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def _os_errors(self, path: Path) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            raise AdapterError(f"{self.system}: {path}: {error}") from error


# -- the shared write step -----------------------------------------------------------------


def _settle(
    table: _Table, key: str, row: _Row | None, writes: list[tuple[int, Write]]
) -> tuple[Any, list[tuple[int, WriteResult]]]:
    """Apply, in order, the writes for one key to its row: the raw row to keep (None for no
    row) and each write's result."""
    raw = row.raw if row is not None else None
    results: list[tuple[int, WriteResult]] = []
    try:
        state = table.record(row) if row is not None else None
    except AdapterError as unreadable:
        return raw, [(i, WriteResult(key, "failed", error=str(unreadable))) for i, _ in writes]
    for index, write in writes:
        try:
            parts = table.parts(key)
            write = _without_key_fields(table, write, parts)
            refused = check_expected(key, write, state)
            if refused is not None:
                results.append((index, refused))
                continue
            after = apply_write(write, state)
            new_raw = None if after is None else table.encode(key, parts, after, row)
        except _Unfit as unfit:
            results.append(
                (index, WriteResult(key, "failed", state, unfit.field, error=str(unfit)))
            )
            continue
        results.append((index, WriteResult(key, "applied", None if state is None else dict(state))))
        state, raw = after, new_raw
    return raw, results


def _without_key_fields(table: _Table, write: Write, parts: list[str]) -> Write:
    """The write with key fields left out of its values (they are implied by the key);
    refused if it would change or unset a key, or unset a field the file cannot lack."""
    values = dict(write.values)
    for name, part in zip(table.keys, parts, strict=True):
        if name in write.unset or (name in values and _key_text_of(values.pop(name)) != part):
            raise _Unfit(
                name,
                f"{_key_label(table, parts)}: field {name!r} is the record's key; a key cannot "
                "change (delete the record and create it under the new key)",
            )
    if write.operation == "update" and write.unset and not table.can_unset:
        raise _Unfit(
            write.unset[0],
            f"{_key_label(table, parts)}: cannot unset {write.unset[0]!r}: CSV has no absent "
            "field (every column exists); write None to empty the cell",
        )
    return replace(write, values=values) if len(values) != len(write.values) else write


def _key_label(table: _Table, parts: list[str]) -> str:
    return f"{table.path.name} record {join_key(parts)!r}"


def _in_order(rows: Iterator[_Row], path: Path, collection: str) -> Iterator[_Row]:
    """The rows, refusing (while streaming) a file that is not strictly sorted by key text."""
    previous: _Row | None = None
    for row in rows:
        if previous is not None and row.key <= previous.key:
            if row.key == previous.key:
                raise AdapterError(
                    f"{path} line {row.line}: key {row.key!r} appears twice (also line "
                    f"{previous.line}); remove one of the rows"
                )
            raise AdapterError(
                f"{path} line {row.line}: key {row.key!r} comes after {previous.key!r}, but "
                "the adapter keeps the file sorted by key text so that it can stream it; sort "
                f"the rows by key (as text), or call FileAdapter.sort({collection!r}) to "
                "rewrite it in order"
            )
        previous = row
        yield row


def _row_key(row: _Row) -> str:
    return row.key


def _key_text_of(value: Any) -> str | None:
    """The text of a key cell or field: text as is, an integer as its digits."""
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    return None


# -- files on disk -------------------------------------------------------------------------


class _Replacement:
    """A hidden temporary file next to `path` that replaces it on `commit`, else vanishes."""

    def __init__(self, path: Path):
        self.path = path
        self.temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        self.file: IO[bytes] = open(  # noqa: SIM115 - closed by commit or __exit__
            os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb"
        )
        self.committed = False

    def __enter__(self) -> _Replacement:
        return self

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        with suppress(FileNotFoundError):  # a new file keeps the umask's mode
            os.fchmod(self.file.fileno(), stat.S_IMODE(os.stat(self.path).st_mode))
        self.file.close()
        os.replace(self.temp, self.path)
        self.committed = True
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def __exit__(self, *exc: object) -> None:
        self.file.close()
        if not self.committed:
            self.temp.unlink(missing_ok=True)


def _remove_leftovers(path: Path) -> None:
    """Remove temporary files of writers that died (call only under the lock)."""
    leftover = re.compile(rf"\.{re.escape(path.name)}\.\d+\.[0-9a-f]{{8}}\.tmp")
    if not path.parent.is_dir():
        return
    for entry in os.scandir(path.parent):
        if leftover.fullmatch(entry.name):
            Path(entry.path).unlink(missing_ok=True)


class _Row(NamedTuple):
    key: str
    line: int
    raw: Any  # written back as is when the record is untouched
    parsed: Any  # CSV: the cells; JSON Lines: the object


class _Unfit(Exception):
    """A value the file cannot hold so that it reads back the same; names the field."""

    def __init__(self, field: str | None, message: str):
        self.field = field
        super().__init__(message)


class _Table:
    """One pass over a collection's file (or over nothing, if it does not exist yet)."""

    keys: tuple[str, ...]
    can_unset: bool

    def __init__(self, path: Path, key: str | tuple[str, ...]):
        self.path = path
        self.keys = (key,) if isinstance(key, str) else tuple(key)
        self._source: IO[Any] | None = None

    def __enter__(self) -> _Table:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._source is not None:
            self._source.close()

    def parts(self, key: str) -> list[str]:
        """The key's parts, one per key column; refused unless `key` is their one key text."""
        parts = split_key(key, len(self.keys))
        if len(parts) != len(self.keys) or join_key(parts) != key:
            raise _Unfit(
                None,
                f"{self.path.name}: key {key!r} is not the key text of {len(self.keys)} "
                f"part(s) for key columns {list(self.keys)} (each part's '%' written %25 "
                "and, in a composite key, '/' written %2F: see ledger/keys.py)",
            )
        return parts

    def rows(self) -> Iterator[_Row]:
        raise NotImplementedError

    def record(self, row: _Row) -> Record:
        raise NotImplementedError

    def encode(self, key: str, parts: list[str], record: Record, old: _Row | None) -> Any:
        raise NotImplementedError

    def start(self, out: IO[bytes]) -> Callable[[Any], None]:
        """Begin a file (header, if any) on `out`; the function that writes one raw row."""
        raise NotImplementedError


# -- CSV -----------------------------------------------------------------------------------

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


class _CsvTable(_Table):
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

    def rows(self) -> Iterator[_Row]:
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
                yield _Row(join_key([cells[i] for i in self._key_at]), line, cells, cells)

    def record(self, row: _Row) -> Record:
        record: Record = {}
        for column, cell in zip(self.header, row.parsed, strict=True):
            kind = self.types.get(column)
            if kind is None:
                continue  # a key column
            try:
                record[column] = _decode_cell(cell, kind, self.spec.empty == "text")
            except (ValueError, ArithmeticError, InvalidValue) as error:
                raise AdapterError(
                    f"{self.path} line {row.line}: column {column!r} holds {cell!r}, which is "
                    f"not a {kind} ({error}); fix the cell or the column's type"
                ) from None
        return record

    def encode(self, key: str, parts: list[str], record: Record, old: _Row | None) -> Any:
        for name in record:
            if name not in self.types:
                raise _Unfit(
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
                cells[column] = _encode_cell(value, kind, self.spec.empty == "text")
                cells[column].encode("utf-8")
                if len(cells[column]) > csv.field_size_limit():
                    raise ValueError(
                        f"the csv module reads cells of {csv.field_size_limit()} characters at most"
                    )
            except (ValueError, InvalidValue) as error:
                raise _Unfit(
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


def _encode_cell(value: Any, kind: str, empty_text: bool) -> str:
    """The cell for `value` in a `kind` column; ValueError says why it does not fit."""
    text: str
    if value is None:
        if kind == "text" and empty_text:
            raise ValueError("with empty='text' an empty cell reads as '', so null cannot be kept")
        return ""
    if kind == "json":
        text = "null" if value is JSON_NULL else json_text(value)
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
    back = _decode_cell(text, kind, empty_text)
    if not same(back, value):
        raise ValueError(f"it would read back as {back!r}")
    return text


def _decode_cell(cell: str, kind: str, empty_text: bool) -> Any:
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


# -- JSON Lines ----------------------------------------------------------------------------


class _JsonLinesTable(_Table):
    can_unset = True

    def __init__(self, spec: JsonLinesCollection, path: Path):
        super().__init__(path, spec.key)
        with suppress(FileNotFoundError):
            self._source = open(path, "rb")  # noqa: SIM115 - closed on exit

    def rows(self) -> Iterator[_Row]:
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
                text = _key_text_of(parsed.get(name))
                if text is None:
                    raise AdapterError(
                        f"{where}: key field {name!r} is {parsed.get(name, 'missing')!r}; "
                        "every line needs its key as text"
                    )
                parts.append(text)
            if not raw.endswith(b"\n"):
                raw += b"\n"
            yield _Row(join_key(parts), line, raw, parsed)

    def record(self, row: _Row) -> Record:
        return {name: value for name, value in row.parsed.items() if name not in self.keys}

    def encode(self, key: str, parts: list[str], record: Record, old: _Row | None) -> Any:
        if old is not None:
            head = {name: old.parsed[name] for name in self.keys}  # kept as written
        else:
            head = dict(zip(self.keys, parts, strict=True))
        fields = []
        for name, value in {**head, **record}.items():
            try:
                text = f"{json.dumps(name, ensure_ascii=False)}: {json_text(value)}"
                fields.append(text.encode("utf-8"))
            except (ValueError, InvalidValue) as error:
                raise _Unfit(
                    name, f"{self.path.name} record {key!r}: field {name!r} is {value!r}: {error}"
                ) from None
        line = b"{" + b", ".join(fields) + b"}"
        try:
            back = parse_json(line, f"{self.path.name} record {key!r}")
        except InvalidValue as error:
            raise _Unfit(None, str(error)) from None
        for name, value in record.items():
            if not same(back[name], value):
                raise _Unfit(
                    name,
                    f"{self.path.name} record {key!r}: field {name!r} is {value!r}, which would "
                    f"read back from JSON as {back[name]!r}",
                )
        return line + b"\n"

    def start(self, out: IO[bytes]) -> Callable[[Any], None]:
        def put(raw: Any) -> None:
            out.write(raw)

        return put


# -- the two adapters ----------------------------------------------------------------------


class CsvAdapter(FileAdapter):
    """Collections kept as CSV files (see `CsvCollection`)."""

    def __init__(
        self,
        system: str,
        directory: str | os.PathLike[str],
        collections: Mapping[str, CsvCollection],
    ):
        super().__init__(system, directory, collections)


class JsonLinesAdapter(FileAdapter):
    """Collections kept as JSON Lines files (see `JsonLinesCollection`)."""

    def __init__(
        self,
        system: str,
        directory: str | os.PathLike[str],
        collections: Mapping[str, JsonLinesCollection],
    ):
        super().__init__(system, directory, collections)
