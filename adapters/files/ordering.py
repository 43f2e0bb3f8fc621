"""Files kept in key text order: the check while streaming, and the sort that repairs one.

The adapter keeps every file sorted by key text (as Python compares str)
and writes it that way, so `scan` and `read` are one streaming pass whose memory does not grow
with the file. A file edited by hand into another order (or with a key twice) is detected while
streaming: an `AdapterError` names the line and says to sort the file, or to call
`FileAdapter.sort`, which rewrites it in order with an external merge sort.
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

from adapters.files.atomic import Replacement
from adapters.files.table import Row, Table
from ledger.errors import AdapterError

SORT_RUN_ROWS = 50_000
"""Rows `FileAdapter.sort` holds in memory at once; longer files are merged from sorted runs."""


def in_order(rows: Iterator[Row], path: Path, collection: str) -> Iterator[Row]:
    """The rows, refusing (while streaming) a file that is not strictly sorted by key text."""
    previous: Row | None = None
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


def _row_key(row: Row) -> str:
    return row.key


def sort_file(path: Path, opener: Callable[[Path], Table]) -> None:
    """Rewrite a file edited by hand into key text order, atomically (the caller holds the
    file's lock); `opener` opens a file of the collection's format.

    An external merge sort: runs of `SORT_RUN_ROWS` rows are sorted in memory and
    spilled to temporary files, then merged, so memory does not grow with the file.
    Rows are copied as they are; a key that appears twice is refused (nothing changes).
    """
    if not path.exists():
        return
    with ExitStack() as stack:
        table = stack.enter_context(opener(path))
        spill_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        runs: list[Iterator[Row]] = []
        batch: list[Row] = []
        for row in table.rows():
            batch.append(row)
            if len(batch) >= SORT_RUN_ROWS:
                run_path = spill_dir / f"run{len(runs)}"
                with open(run_path, "wb") as run_file:
                    put = table.start(run_file)
                    for spilled in sorted(batch, key=_row_key):
                        put(spilled.raw)
                runs.append(stack.enter_context(opener(run_path)).rows())
                batch = []
        runs.append(iter(sorted(batch, key=_row_key)))
        out = stack.enter_context(Replacement(path))
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
