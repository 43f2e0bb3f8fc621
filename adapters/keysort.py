"""Sorting a stream of records into key order, in flat memory.

Every scan must list records in the one key order (`ledger.keys`). A system that lists in
another order (a SQL key whose type the database cannot turn into the ledger's key text, a
server with its own sort) has its stream sorted here: rows go into a table of a temporary
SQLite file, whose sorter spills to disk, and come back ``ORDER BY key`` (``BINARY``: code
point order, as Python compares str). Memory stays flat for any number of rows; the file
is deleted when the stream ends or is dropped.
"""

from __future__ import annotations

import pickle
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

BATCH = 10_000


def sorted_by_key(records: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """`records` (key, record) in ascending key order; records come back exactly (pickled)."""
    with tempfile.TemporaryDirectory(prefix="ledger-sort-") as directory:
        database = sqlite3.connect(Path(directory) / "sort.db", isolation_level=None)
        try:
            database.execute("PRAGMA journal_mode = OFF")
            database.execute("PRAGMA synchronous = OFF")
            database.execute("CREATE TABLE rows (key TEXT NOT NULL, record BLOB NOT NULL)")
            stream = iter(records)
            database.execute("BEGIN")
            while batch := list(islice(stream, BATCH)):
                database.executemany(
                    "INSERT INTO rows VALUES (?, ?)",
                    [(key, pickle.dumps(record, pickle.HIGHEST_PROTOCOL)) for key, record in batch],
                )
            database.execute("COMMIT")
            for key, record in database.execute("SELECT key, record FROM rows ORDER BY key"):
                yield key, pickle.loads(record)
        finally:
            database.close()
