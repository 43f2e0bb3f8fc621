"""Bringing existing data under the ledger: a baseline of a whole collection (`ledger track`).

The ledger knows a record from the first time a run touches it (whole, since then); a
collection it has never seen is empty to it, so "as of before the batch" would show nothing.
Tracking reads the whole collection once, streamed in key order, and records a `track` action
for every record the ledger does not yet know whole — the record exactly as the system holds
it, changing nothing there. Afterwards every as-of view of the collection is the whole table.

A record the ledger knows with other values than the system holds (or knows as deleted, or
holds but the system lacks) is drift: tracking leaves it alone and counts it, since adopting
it silently would hide an outside edit; `ledger reconcile` is the tool for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ledger.application import Ledger
from ledger.changes import Change
from ledger.domain import TRACK, Address
from ledger.keys import in_key_order, merge_by_key
from ledger.ports import Adapter, Record
from ledger.recording import CHUNK
from ledger.values import ABSENT, same
from ledger.views import EntityState

# Rows recorded per commit: chunks of `CHUNK` go in one held write transaction (SQLite) until
# this many are in it. A killed track loses at most this many rows' work; what committed stays
# and a new track resumes after it. Fewer, larger commits: a commit every 1,000 rows took a
# third of the baseline's time.
COMMIT_EVERY = 50_000
SAMPLES = 20


@dataclass(frozen=True)
class TrackReport:
    """What a baseline did: records now known whole, those already were, drift left alone."""

    system: str
    collection: str
    batch: str
    tracked: int
    already_whole: int
    drifted: int
    drift_samples: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "collection": self.collection,
            "batch": self.batch,
            "tracked": self.tracked,
            "already_whole": self.already_whole,
            "drifted": self.drifted,
            "drift_samples": list(self.drift_samples),
        }


def track(
    ledger: Ledger,
    adapter: Adapter,
    collection: str,
    *,
    batch: str | None = None,
    actor: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> TrackReport:
    """Record every record of a collection the ledger does not know whole, in chunks of
    `CHUNK` held in one write transaction per `COMMIT_EVERY` rows, streaming both sides so
    memory does not grow."""
    system = adapter.system
    name = batch or f"track-{system}-{collection}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    counts = {"tracked": 0, "already_whole": 0, "drifted": 0}
    samples: list[str] = []
    pending: list[Change] = []

    def flush() -> None:
        if pending:
            ledger.record_stream(pending, batch=name, actor=actor, trigger="track")
            counts["tracked"] += len(pending)
            pending.clear()

    prefix = len(f"{system}/{collection}/")
    items = merge_by_key(
        ledger.collection(system, collection, deleted=True),
        in_key_order(adapter.scan(collection), f"{system}/{collection}"),
        lambda state: state.entity[prefix:],
        lambda item: item[0],
    )
    exhausted = False
    while not exhausted:
        committed = counts["tracked"]
        exhausted = True
        # Reads and inserts of the chunks run in the held transaction: each chunk sees the ones
        # before it, and an error rolls back only the rows since the last commit.
        with ledger.index.held_transaction():
            for key, known, found in items:
                record = found[1] if found is not None else None
                if on_progress is not None:
                    on_progress(1)
                verdict = _verdict(known, record)
                if verdict == "track":
                    pending.append(
                        Change(Address(system, collection, key), TRACK, values=dict(record or {}))
                    )
                    if len(pending) >= CHUNK:
                        flush()
                        if counts["tracked"] - committed >= COMMIT_EVERY:
                            exhausted = False
                            break
                elif verdict == "drifted":
                    counts["drifted"] += 1
                    if len(samples) < SAMPLES:
                        samples.append(f"{system}/{collection}/{key}")
                else:
                    counts["already_whole"] += 1
            flush()
    return TrackReport(system, collection, name, drift_samples=tuple(samples), **counts)


def _verdict(known: EntityState | None, record: Record | None) -> str:
    """``track`` a record the ledger does not know whole (and does not contradict), leave it
    ``whole``, or report it ``drifted``."""
    if record is None:
        return "drifted" if known is not None and known.exists else "whole"
    if known is None:
        return "track"
    if not known.exists:
        return "drifted"  # the ledger says deleted (or moved), the system has it
    if any(not same(value, record.get(name, ABSENT)) for name, value in known.fields.items()):
        return "drifted"
    return "track" if set(record) - set(known.fields) else "whole"
