"""Reading workloads: one record at a point (4, 8b) and a whole collection streamed (5)."""

from __future__ import annotations

import hashlib
import time
from typing import Any, cast

import orjson

from bench.data import CHECKPOINT, COLLECTION, HISTORY, SYSTEM, history_change
from ledger import Ledger, Point, open_ledger
from ledger.domain import Entity, fold
from ledger.store import from_micros, to_micros

HISTORY_CHUNK = 1_000


def seed_history(db: str, versions: int) -> dict[str, Any]:
    """One record with ``versions`` actions (snapshots every 100, as the ledger takes them)."""
    ledger = open_ledger(db)
    for start in range(1, versions + 1, HISTORY_CHUNK):  # kept small: see write_tasks
        stop = min(versions, start + HISTORY_CHUNK - 1)
        ledger.record_all([history_change(v) for v in range(start, stop + 1)], batch="history")
    actions = ledger.history(HISTORY)
    ledger.close()
    return {
        "versions": len(actions),
        "first": to_micros(actions[0].recorded_at),
        "last": to_micros(actions[-1].recorded_at),
    }


def _digest(version: int, exists: bool, fields: dict[str, Any]) -> str:
    encoded = orjson.dumps([version, exists, fields], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(encoded).hexdigest()[:16]


def ledger_state(db: str, samples: list[tuple[str, int]]) -> dict[str, Any]:
    """Workload 4: `Ledger.state(address, Point(...))` per sample, each timed on its own."""
    ledger = open_ledger(db)
    durations, results = [], []
    for kind, value in samples:
        point = Point("time", from_micros(value)) if kind == "time" else Point("version", value)
        started = time.perf_counter()
        state = ledger.state(HISTORY, point)
        durations.append(time.perf_counter() - started)
        results.append(_digest(state.version, state.exists, state.fields))
    ledger.close()
    return {"durations": durations, "results": results}


def replay_state(db: str, samples: list[tuple[str, int]]) -> dict[str, Any]:
    """Reference of workload 4: read the record's events from version 1 and fold them all,
    without snapshots or the index (the same stored events and the same transcoder)."""
    ledger = open_ledger(db)
    durations, results = [], []
    for kind, value in samples:
        started = time.perf_counter()
        version, exists, fields = _replay(ledger, kind, value)
        durations.append(time.perf_counter() - started)
        results.append(_digest(version, exists, fields))
    ledger.close()
    return {"durations": durations, "results": results}


def _replay(ledger: Ledger, kind: str, value: int) -> tuple[int, bool, dict[str, Any]]:
    entity_id = HISTORY.entity_id
    stored = ledger.recorder.select_events(entity_id, lte=value if kind == "version" else None)
    version, exists, fields = 0, False, cast(dict[str, Any], {})
    for item in stored:
        event = cast(Entity.Action, ledger.mapper.to_domain_event(item))
        if kind == "time" and to_micros(event.timestamp) > value:
            break
        fields, exists = fold(fields, event.operation, event.before, event.after)
        version = event.originator_version
    return version, exists, fields


def ledger_collection(db: str) -> dict[str, Any]:
    """Workload 5: every record of the collection as of the checkpoint, streamed."""
    ledger = open_ledger(db)
    started = time.perf_counter()
    count = sum(
        1 for state in ledger.collection(SYSTEM, COLLECTION, Point("checkpoint", CHECKPOINT))
    )
    seconds = time.perf_counter() - started
    ledger.close()
    return {"count": count, "seconds": seconds}
