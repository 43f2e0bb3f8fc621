"""Baselines: the target captured before a batch, checked after it against what was recorded.

A baseline is a JSON Lines file (values exactly, in key order) headed by the ledger's position.
Afterwards the target is compared with the baseline with the actions recorded since applied:
anything they do not explain is drift, including an action that started from values the
prediction did not hold (``before_differs``: an unrecorded edit came first).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson

from ledger.application import Ledger
from ledger.domain import Entity, fold
from ledger.errors import InvalidChange, NotFound
from ledger.keys import in_key_order, merge_by_key
from ledger.ports import Adapter, Record
from ledger.reconcile.compare import (
    Comparison,
    Drift,
    Known,
    ReconcileScope,
    actions,
    merge,
    target_records,
)
from ledger.store import Cutoff
from ledger.transcoder import OrjsonTranscoder
from ledger.values import ABSENT, same

BASELINE_FORMAT = "changeledger-baseline/1"
_CODEC = OrjsonTranscoder()


@dataclass(frozen=True)
class Baseline:
    """A snapshot of a collection as the target held it, and the ledger position it was taken at."""

    path: Path
    system: str
    collection: str
    position: int
    captured_at: datetime
    records: int

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline": str(self.path),
            "system": self.system,
            "collection": self.collection,
            "position": self.position,
            "captured_at": self.captured_at.isoformat(),
            "records": self.records,
        }


def capture_baseline(
    ledger: Ledger, adapter: Adapter, collection: str, path: str | os.PathLike[str]
) -> Baseline:
    """Stream the target's collection into a JSON Lines file (values exactly, in key order),
    headed by the ledger's position: take it before a batch, while nothing else writes."""
    path = Path(path)
    position = ledger.recorder.max_notification_id() or 0
    captured_at = datetime.now(UTC)
    header = {
        "format": BASELINE_FORMAT,
        "system": adapter.system,
        "collection": collection,
        "position": position,
        "captured_at": captured_at.isoformat(),
    }
    partial = path.with_name(path.name + ".partial")
    count = 0
    try:
        with partial.open("wb") as out:
            out.write(orjson.dumps(header) + b"\n")
            for key, record in target_records(adapter, collection):
                out.write(_CODEC.encode([key, record]) + b"\n")
                count += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return Baseline(path, adapter.system, collection, position, captured_at, count)


def compare_baseline(
    ledger: Ledger,
    adapter: Adapter,
    path: str | os.PathLike[str],
    *,
    collection: str | None = None,
    batch: str | None = None,
    null_is_absent: bool = False,
) -> Comparison:
    """The target now against the baseline with the actions recorded since applied (only
    ``batch``'s, if given): anything the actions do not explain is drift. The ``ledger`` side
    of each field is what the baseline and the actions predict. ``before_differs``: an action
    started from values the prediction did not hold — an unrecorded edit came first.
    ``collection``, if given, must be the one the baseline holds."""
    header, records = _read_baseline(Path(path))
    system, captured = header["system"], header["collection"]
    if system != adapter.system:
        raise InvalidChange(f"{path} is a baseline of system {system!r}, not {adapter.system!r}")
    if collection is not None and collection != captured:
        raise InvalidChange(
            f"{path} is a baseline of {system}/{captured}, not {system}/{collection}"
        )
    collection = captured
    position = int(header["position"])
    end = ledger.recorder.max_notification_id() or 0
    since = (
        (key, event)
        for key, at, event in actions(ledger, system, collection, Cutoff("position", end))
        if at > position and (batch is None or event.batch == batch)
    )
    return Comparison(
        system,
        collection,
        f"baseline:{header['captured_at']}",
        merge(_predict(records, since), target_records(adapter, collection)),
        ReconcileScope(null_is_absent=null_is_absent),
        end,
        against="baseline",
    )


def _read_baseline(path: Path) -> tuple[dict[str, Any], Iterator[tuple[str, Record]]]:
    """The header now; the records streamed when read."""
    try:
        with path.open("rb") as lines:
            first = lines.readline()
    except OSError as error:
        raise NotFound(f"cannot read baseline {path}: {error.strerror}") from None
    try:
        header = orjson.loads(first or b"null")
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != BASELINE_FORMAT:
        raise InvalidChange(f"{path} is not a baseline written by `ledger reconcile`")

    def records() -> Iterator[tuple[str, Record]]:
        with path.open("rb") as lines:
            lines.readline()
            for line in lines:
                key, record = _CODEC.decode(line)
                yield key, record

    return header, in_key_order(records(), str(path))


def _predict(
    baseline: Iterator[tuple[str, Record]], actions: Iterator[tuple[str, Entity.Action]]
) -> Iterator[Known]:
    """Each record as the baseline and the actions since predict it, in key order. A baseline
    record is known whole; one created since, by the fields its actions touched."""
    grouped = (
        (key, [event for _, event in rows])
        for key, rows in itertools.groupby(actions, key=lambda row: row[0])
    )
    records = (Known(key, True, record, complete=True) for key, record in baseline)
    for key, known, group in merge_by_key(records, grouped, _known_key, _group_key):
        if group is None:
            yield cast(Known, known)
            continue
        state = known if known is not None else Known(key)
        for event in group[1]:
            surprise = _before_differs(state, event)
            if surprise:
                state.notes.append(
                    Drift(state.key, "before_differs", surprise, event.originator_version)
                )
            state.fields, state.exists = fold(
                state.fields, event.operation, event.before, event.after
            )
            if event.operation == "create":
                state.known, state.complete = set(event.after), False
            else:
                state.known |= event.before.keys() | event.after.keys()
            state.version = event.originator_version
        yield state


def _known_key(known: Known) -> str:
    return known.key


def _group_key(group: tuple[str, list[Entity.Action]]) -> str:
    return group[0]


def _before_differs(state: Known, event: Entity.Action) -> dict[str, tuple[Any, Any]]:
    """Where an action's before-values (or the record's existence) are not what was predicted."""
    if event.operation == "create" and state.exists:
        return {"(record)": ("exists", ABSENT)}
    if event.operation != "create" and not state.exists:
        return {"(record)": (ABSENT, "exists")}
    return {
        name: (state.fields.get(name, ABSENT), value)
        for name, value in event.before.items()
        if not same(state.fields.get(name, ABSENT), value)
    }
