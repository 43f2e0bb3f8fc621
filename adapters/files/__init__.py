"""The file adapter: spreadsheets exported as CSV, and JSON Lines files, one file per collection.

Each collection is one file in ``directory`` (``contacts.csv`` / ``contacts.jsonl`` unless
configured otherwise) whose key column(s) (``key``, default ``"id"``) identify each row. A
record is the row without its key columns; its key text is `join_key` of its key cell(s)
(``key=("region", "number")`` for a composite key; see `ledger.keys`).

The adapter keeps every file sorted by key text and streams it (`adapters.files.ordering`,
which also sorts a file edited by hand); a write is one rewrite of the file, merged as it
streams (`adapters.files.rewrite`) into a temporary file that atomically replaces it under an
exclusive lock (`adapters.files.atomic`). The formats, with their types: CSV
(`adapters.files.csv_table`) and JSON Lines (`adapters.files.jsonl_table`).

A write's values may repeat a key field only with the record's own key: a key never changes
(delete, then create under the new key). A key must be in its one form (`ledger.keys`), or
the write fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from adapters.files.atomic import locked, remove_leftovers
from adapters.files.csv_table import COLUMN_TYPES, CsvCollection
from adapters.files.jsonl_table import JsonLinesCollection
from adapters.files.ordering import SORT_RUN_ROWS, in_order, sort_file
from adapters.files.rewrite import rewrite
from ledger.errors import AdapterError
from ledger.ports import Record, Relation, Write, WriteResult, declared_relations

__all__ = [
    "COLUMN_TYPES",
    "SORT_RUN_ROWS",
    "Collection",
    "CsvAdapter",
    "CsvCollection",
    "FileAdapter",
    "JsonLinesAdapter",
    "JsonLinesCollection",
]

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
                for row in in_order(table.rows(), path, collection):
                    if row.key in wanted:
                        found[row.key] = table.record(row)
        return {key: dict(found[key]) if key in found else None for key in keys}

    def scan(self, collection: str) -> Iterator[tuple[str, Record]]:
        spec, path = self._locate(collection)
        with self._os_errors(path), spec.table(path) as table:
            for row in in_order(table.rows(), path, collection):
                yield row.key, table.record(row)

    def write(self, collection: str, writes: Sequence[Write]) -> list[WriteResult]:
        spec, path = self._locate(collection)
        if not writes:
            return []
        with self._os_errors(path), locked(path):
            remove_leftovers(path)
            with spec.table(path) as table:
                return rewrite(table, path, collection, writes)

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
        """Rewrite a file edited by hand into key text order, atomically and under the lock
        (an external merge sort: `adapters.files.ordering`)."""
        spec, path = self._locate(collection)
        with self._os_errors(path), locked(path):
            remove_leftovers(path)
            sort_file(path, spec.table)

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
    def _os_errors(self, path: Path) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            raise AdapterError(f"{self.system}: {path}: {error}") from error


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
