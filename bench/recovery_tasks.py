"""Workload 11: `ledger recover` of N unsettled writes on a PostgreSQL ledger, against the
per-write recovery it replaced (one intent read, one target read, one settle transaction each).

Seeding (untimed): a SQLite `contacts` table of N rows, then a run through the SQL adapter
declares N intents and dies after writing half of them (the even ids), so recovery finds N
pending intents, half landed (recorded as actions) and half not (settled as not applied).
Both tasks recover their own copy of that ledger, from the same target table, which recovery
only reads.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import Counter
from typing import Any, cast

from adapters.sql import SqlAdapter, SqlCollection
from bench.data import COLLECTION, SYSTEM
from ledger import Address, Change, Ledger, open_ledger
from ledger.domain import Intent, intent_id
from ledger.ports import Adapter, WriteResult, holds
from ledger.runs import Run, Target
from ledger.settlement import Outcome, _change_from_intent, recover, settle
from ledger.store import SaveContext

CRASHED_BATCH = "crashed-run"


def _adapter(target: str) -> SqlAdapter:
    return SqlAdapter(SYSTEM, f"sqlite:///{target}", {COLLECTION: SqlCollection(COLLECTION)})


class _HalfThenDies:
    """The adapter, writing the even ids of a chunk; then the run dies before settling."""

    def __init__(self, adapter: SqlAdapter) -> None:
        self.adapter, self.system = adapter, adapter.system

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)

    def write(self, collection: str, writes: Any) -> Any:
        self.adapter.write(collection, [w for w in writes if int(w.key) % 2 == 0])
        raise SystemExit("the run died after writing half of its chunk")


def seed_recovery(db: str, target: str, n: int) -> dict[str, Any]:
    connection = sqlite3.connect(target)
    connection.execute(
        f"CREATE TABLE {COLLECTION} (id INTEGER PRIMARY KEY, email TEXT, stage TEXT, score INTEGER)"
    )
    connection.executemany(
        f"INSERT INTO {COLLECTION} (id, email, stage, score) VALUES (?, ?, 'lead', ?)",
        ((i, f"contact{i}@example.com", i % 100) for i in range(n)),
    )
    connection.commit()
    connection.close()
    ledger = open_ledger(db)
    adapter = _adapter(target)
    changes = [
        Change(Address(SYSTEM, COLLECTION, str(i)), "update", values={"stage": "customer"})
        for i in range(n)
    ]
    with contextlib.suppress(SystemExit):  # the run dies as `_HalfThenDies` makes it
        Run(ledger, CRASHED_BATCH).apply(
            Target(cast(Any, _HalfThenDies(adapter)), COLLECTION), changes, chunk_size=n
        )
    pending = len(ledger.index.pending(CRASHED_BATCH))
    adapter.close()
    ledger.close()
    assert pending == n, f"{pending} unsettled writes, not {n}"
    return {"pending": pending}


def ledger_recover(db: str, target: str) -> dict[str, Any]:
    """`ledger.settlement.recover`, as `ledger recover` calls it."""
    return _timed(db, target, recover)


def per_write_recover(db: str, target: str) -> dict[str, Any]:
    """The reference: the recovery before rounds, one write at a time (its code, unchanged)."""
    return _timed(db, target, _per_write)


def _timed(db: str, target: str, run: Any) -> dict[str, Any]:
    ledger = open_ledger(db, create=False)
    adapter = _adapter(target)
    started = time.perf_counter()
    outcomes: list[Outcome] = run(ledger, {SYSTEM: adapter})
    seconds = time.perf_counter() - started
    left = len(ledger.index.pending())
    adapter.close()
    ledger.close()
    assert left == 0, f"{left} writes still unsettled"
    return {
        "count": len(outcomes),
        "seconds": seconds,
        "statuses": dict(Counter(o.status for o in outcomes)),
    }


def _per_write(ledger: Ledger, adapters: dict[str, Adapter]) -> list[Outcome]:
    outcomes = []
    for pending in ledger.index.pending(None):
        intent = cast(Intent, ledger.repository.get(intent_id(pending.fingerprint)))
        change = _change_from_intent(intent)
        record = adapters[pending.system].read(pending.collection, [pending.key])[pending.key]
        if holds(change, record):
            result = WriteResult(pending.key, "applied", change.image)
            outcomes.extend(settle(ledger, [(change, result)]))
        else:
            intent.settle("not_applied")
            ledger.save(intent, context=SaveContext(settled=[pending.fingerprint]))
            outcomes.append(Outcome(str(change.address), "not_applied"))
    return outcomes
