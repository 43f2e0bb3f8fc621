"""Workload 10: `verify` of a whole ledger against a raw SHA-256 of the same stored bytes.

Seeding (untimed) stores N events of about 730 bytes through the ledger's own recorder
(`insert_events`: each chunk one transaction with its leaves and a signed head, the real write
path), so the verified log is exactly what the store writes; the events are opaque to
`verify`, which hashes stored bytes and never decodes them.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from typing import Any, cast
from uuid import NAMESPACE_URL, uuid5

from eventsourcing.persistence import StoredEvent

from ledger import open_ledger
from ledger.evidence import verify
from ledger.store.tree import TreeRecorder

SEED_CHUNK = 20_000
TOPIC = "bench.integrity:Stored"


def _state(i: int) -> bytes:
    body = f'{{"i":{i},"fields":{{"lifecycle_stage":["lead","customer"],"owner":["a","b"]}}'
    return (body + ',"pad":"' + "x" * (700 - len(body)) + '"}').encode()


def seed_verify(db: str, n: int) -> dict[str, Any]:
    """N events stored through the ledger's recorder, in transactions of SEED_CHUNK."""
    ledger = open_ledger(db)
    recorder = cast(TreeRecorder, ledger.recorder)
    for start in range(0, n, SEED_CHUNK):
        ledger.recorder.insert_events(
            [
                StoredEvent(uuid5(NAMESPACE_URL, f"bench/{i}"), 1, TOPIC, _state(i))
                for i in range(start, min(n, start + SEED_CHUNK))
            ]
        )
    with recorder.tree_snapshot() as snapshot:
        size = snapshot.tree_size()
    ledger.close()
    return {"size": size}


def ledger_verify(db: str) -> dict[str, Any]:
    """`ledger.evidence.verify`: every leaf recomputed, the tree rebuilt, every head checked."""
    ledger = open_ledger(db, create=False)
    started = time.perf_counter()
    report = verify(ledger)
    seconds = time.perf_counter() - started
    ledger.close()
    assert report.ok, report.first_break
    return {"count": report.size, "seconds": seconds, "heads": report.heads_checked}


def raw_verify(db: str) -> dict[str, Any]:
    """The reference: one streaming SELECT of the same event rows, one SHA-256 of each row's
    stored bytes (id, topic, state)."""
    connection = sqlite3.connect(db)
    started = time.perf_counter()
    count = 0
    sha256 = hashlib.sha256
    for _, ident, _, topic, state in connection.execute(
        "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
        "ORDER BY rowid"
    ):
        sha256(ident.encode() + topic.encode() + state).digest()
        count += 1
    seconds = time.perf_counter() - started
    connection.close()
    return {"count": count, "seconds": seconds}
