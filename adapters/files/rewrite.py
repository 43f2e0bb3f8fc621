"""A write: the writes of one chunk merged into one streaming rewrite of the file.

The old file streams into the replacement (`adapters.files.atomic`) in key order, and the
writes, sorted by key, are applied as their keys pass (creates inserted in order), each
compared and applied by the same step (`settle`), so memory is bounded by the number of writes
and never by the file. A key field may be repeated in a write's values only with the record's
own key: a key never changes (delete, then create under the new key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from adapters.files.atomic import Replacement
from adapters.files.ordering import in_order
from adapters.files.table import Row, Table, Unfit
from ledger.errors import AdapterError
from ledger.ports import Write, WriteResult, apply_write, check_expected, join_key, key_text


def rewrite(
    table: Table, path: Path, collection: str, writes: Sequence[Write]
) -> list[WriteResult]:
    """Apply `writes` in one pass over `table` (the file at `path`, whose lock the caller
    holds), replacing the file only if a write applied; one result per write, in order."""
    pending: dict[str, list[int]] = {}
    for index, write in enumerate(writes):
        pending.setdefault(write.key, []).append(index)
    todo = sorted(pending)
    results: list[WriteResult | None] = [None] * len(writes)
    with Replacement(path) as out:
        put = table.start(out.file)
        changed = False

        def settle(key: str, row: Row | None) -> None:
            nonlocal changed
            raw, applied = _settle(table, key, row, [(i, writes[i]) for i in pending[key]])
            for index, result in applied:
                results[index] = result
                changed = changed or result.outcome == "applied"
            if raw is not None:
                put(raw)

        position = 0
        for row in in_order(table.rows(), path, collection):
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


def _settle(
    table: Table, key: str, row: Row | None, writes: list[tuple[int, Write]]
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
        except Unfit as unfit:
            results.append(
                (index, WriteResult(key, "failed", state, unfit.field, error=str(unfit)))
            )
            continue
        results.append((index, WriteResult(key, "applied", None if state is None else dict(state))))
        state, raw = after, new_raw
    return raw, results


def _without_key_fields(table: Table, write: Write, parts: list[str]) -> Write:
    """The write with key fields left out of its values (they are implied by the key);
    refused if it would change or unset a key, or unset a field the file cannot lack."""
    values = dict(write.values)
    for name, part in zip(table.keys, parts, strict=True):
        if name in write.unset or (name in values and key_text(values.pop(name)) != part):
            raise Unfit(
                name,
                f"{_key_label(table, parts)}: field {name!r} is the record's key; a key cannot "
                "change (delete the record and create it under the new key)",
            )
    if write.operation == "update" and write.unset and not table.can_unset:
        raise Unfit(
            write.unset[0],
            f"{_key_label(table, parts)}: cannot unset {write.unset[0]!r}: CSV has no absent "
            "field (every column exists); write None to empty the cell",
        )
    return replace(write, values=values) if len(values) != len(write.values) else write


def _key_label(table: Table, parts: list[str]) -> str:
    return f"{table.path.name} record {join_key(parts)!r}"
