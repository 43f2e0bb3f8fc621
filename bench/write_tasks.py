"""Recording workloads (1, 2, 3 and 8a) and the untimed seeding they start from."""

from __future__ import annotations

import time
from typing import Any

from bench.data import CHECKPOINT, SEED_BATCH, Updates, seed_change, seed_values, update_change
from bench.plain import Record, open_plain
from bench.raw import export_rows, is_postgres
from ledger import open_ledger

SEED_CHUNK = 20_000
# On PostgreSQL one save() is one INSERT whose parameter holds every event, sent in psycopg's
# pipeline mode; from about 5 MB on, that hangs for ever (see docs/performance.md), so the
# untimed seeding stays far below it.
PG_SEED_CHUNK = 2_000


def seed_ledger(db: str, n: int) -> dict[str, Any]:
    """N records created (one action each), then the checkpoint every read workload uses."""
    ledger = open_ledger(db)
    step = PG_SEED_CHUNK if is_postgres(db) else SEED_CHUNK
    for start in range(0, n, step):
        chunk = [seed_change(i) for i in range(start, min(n, start + step))]
        ledger.record_all(chunk, batch=SEED_BATCH)
    position = ledger.checkpoint(CHECKPOINT).position
    ledger.close()
    return {"position": position}


def ledger_batch(db: str, n: int) -> dict[str, Any]:
    """Workload 1: N updates of existing records in one batch, one transaction
    (`record_stream`: `record_all` without a receipt per action). The changes are made as the
    ledger reads them, so neither side of the comparison holds all of them."""
    ledger = open_ledger(db)
    changes = Updates(n)
    after = ledger.recorder.max_notification_id() or 0
    started = time.perf_counter()
    recorded = ledger.record_stream(changes, batch="bench-batch")
    seconds = time.perf_counter() - started
    assert (recorded.recorded, recorded.already_recorded) == (n, 0), recorded
    table = ledger.index.events_table_name
    ledger.close()
    return {"count": n, "seconds": seconds, "after": after, "table": table}


def ledger_pg_batch(db: str, n: int, export: str) -> dict[str, Any]:
    """Workload 8a: N updates of existing records, one `record_all` call, one transaction."""
    ledger = open_ledger(db)
    changes = [update_change(i) for i in range(n)]
    after = ledger.recorder.max_notification_id() or 0
    started = time.perf_counter()
    receipts = ledger.record_all(changes, batch="bench-batch")
    seconds = time.perf_counter() - started
    assert len(receipts) == n and not any(r.duplicate for r in receipts)
    table = ledger.index.events_table_name
    ledger.close()
    return {"count": n, "seconds": seconds, **export_rows(db, table, after, export)}


def ledger_single(db: str, n: int, export: str) -> dict[str, Any]:
    """Workload 3: N updates, each its own `record` call and its own fsynced commit."""
    ledger = open_ledger(db)
    changes = [update_change(i) for i in range(n)]
    after = ledger.recorder.max_notification_id() or 0
    started = time.perf_counter()
    for change in changes:
        ledger.record(change, batch="bench-single")
    seconds = time.perf_counter() - started
    table = ledger.index.events_table_name
    ledger.close()
    return {"count": n, "seconds": seconds, **export_rows(db, table, after, export)}


def seed_plain(db: str, n: int) -> dict[str, Any]:
    app = open_plain(db)
    for start in range(0, n, SEED_CHUNK):
        stop = min(n, start + SEED_CHUNK)
        app.save(
            *(Record.create(seed_change(i).address, seed_values(i)) for i in range(start, stop))
        )
    app.close()
    return {}


def plain_batch(db: str, n: int) -> dict[str, Any]:
    """Reference of workload 2: get each aggregate, apply the change, one `save()`."""
    app = open_plain(db)
    changes = [update_change(i) for i in range(n)]
    started = time.perf_counter()
    records = []
    for change in changes:
        record: Record = app.repository.get(change.address.entity_id)
        record.change(change, "bench-batch")
        records.append(record)
    saving = time.perf_counter()
    app.save(*records)
    finished = time.perf_counter()
    app.close()
    return {"count": n, "seconds": finished - started, "save_seconds": finished - saving}
