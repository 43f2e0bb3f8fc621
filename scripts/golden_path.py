"""Golden path, steps 1-3: a SQLite CRM, a `lead-sync` batch through the SQL adapter with
transient failures and stale drafts, then outside edits made directly in the database."""

from __future__ import annotations

import random
import sqlite3
import sys
from pathlib import Path
from typing import Any

from adapters.sql import SqlAdapter, SqlCollection
from ledger import Address, Change, open_ledger
from ledger.errors import TransientError
from ledger.ports import Write, WriteResult
from ledger.runs import Run, Target

STAGES = ["subscriber", "lead", "mql"]
OWNERS = ["ana", "bo", "chen", "dara"]


def make_crm(path: Path, contacts: int, rng: random.Random) -> None:
    """Step 1: a CRM database with thousands of contacts."""
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE contacts (id TEXT PRIMARY KEY, email TEXT NOT NULL, "
        "lifecycle_stage TEXT, owner TEXT, score INTEGER)"
    )
    db.executemany(
        "INSERT INTO contacts VALUES (?, ?, ?, ?, ?)",
        [
            (
                f"{n:05d}",
                f"contact{n}@example.com",
                rng.choice(STAGES),
                rng.choice(OWNERS),
                rng.randint(0, 100),
            )
            for n in range(1, contacts + 1)
        ],
    )
    db.commit()
    db.close()


class FlakyNetwork:
    """Makes some writes fail transiently: before they reach the CRM, or after (response lost)."""

    def __init__(self, adapter: SqlAdapter, rng: random.Random):
        self.adapter, self.system, self.rng = adapter, adapter.system, rng
        self.failures = 0

    def __getattr__(self, name: str) -> Any:  # read, scan, normalize, … as the CRM does
        return getattr(self.adapter, name)

    def write(self, collection: str, writes: list[Write]) -> list[WriteResult]:
        roll = self.rng.random()
        if roll < 0.2:
            self.failures += 1
            raise TransientError("connection reset before the write reached the CRM")
        results = self.adapter.write(collection, writes)
        if roll < 0.35:
            self.failures += 1
            raise TransientError("the CRM applied the write but its response was lost")
        return results

    def close(self) -> None:
        self.adapter.close()


def main(out: Path) -> None:
    rng = random.Random(11)
    crm = out / "crm.db"
    make_crm(crm, 5000, rng)
    print(f"step 1: {crm} holds 5000 contacts; the ledger records them as its baseline")

    # The automation drafts its changes from what it saw...
    db = sqlite3.connect(crm)
    seen = dict(db.execute("SELECT id, owner FROM contacts"))
    chosen = sorted(rng.sample(sorted(seen), 2000))
    changes = [
        Change(
            Address("crm", "contacts", key),
            "update",
            values={"lifecycle_stage": "sql", "owner": rng.choice(OWNERS)},
            expected={"owner": seen[key]},
            inputs={"rule": "score >= 0 -> sql", "drafted_owner": seen[key]},
            sources=[f"sheet/leads/{key}"],
        )
        for key in chosen
    ]
    # ...but before it runs, a salesperson reassigns five of those contacts.
    edited = chosen[:5]
    db.executemany("UPDATE contacts SET owner = 'eve' WHERE id = ?", [(k,) for k in edited])
    db.commit()

    # The ledger takes the CRM as it is now as its baseline (observed, not done by a workflow).
    ledger = open_ledger(str(out / "ledger.db"))
    columns = ["email", "lifecycle_stage", "owner", "score"]
    baseline = [
        Change(
            Address("crm", "contacts", row[0]),
            "create",
            values=dict(zip(columns, row[1:], strict=True)),
            actor="external",
            trigger="observed",
        )
        for row in db.execute(f"SELECT id, {', '.join(columns)} FROM contacts ORDER BY id")
    ]
    ledger.record_all(baseline, batch="crm-baseline", close_batch=True)
    ledger.checkpoint("before-lead-sync")
    adapter = FlakyNetwork(
        SqlAdapter("crm", f"sqlite:///{crm}", {"contacts": SqlCollection("contacts")}), rng
    )
    with Run(
        ledger,
        "lead-sync-run-1",
        workflow="lead-sync",
        workflow_version="3",
        actor="zapier",
        trigger="schedule",
    ) as run:
        outcomes = run.apply(Target(adapter, "contacts"), changes, chunk_size=100)
    counts = dict(run.counts)
    print(f"step 2: lead-sync: {counts}; {adapter.failures} transient failures were retried")
    stale = [o for o in outcomes if o.status == "stale"]
    for outcome in stale:
        print(
            f"  refused as stale: {outcome.entity}: {outcome.field} expected "
            f"{outcome.expected!r}, CRM holds {outcome.actual!r}"
        )
    recorded = ledger.batch_view("lead-sync-run-1").actions
    assert recorded == counts["applied"] == 1995, (recorded, counts)
    assert {o.entity.rsplit("/", 1)[1] for o in stale} == set(edited)

    # Step 3: meanwhile, someone edits a few contacts directly in the database.
    outside = [k for k in chosen[5:]][:3]
    db.executemany(
        "UPDATE contacts SET lifecycle_stage = 'customer' WHERE id = ?", [(k,) for k in outside]
    )
    db.commit()
    print(f"step 3: outside edits, directly in the CRM: {', '.join(outside)} -> customer")
    (out / "outside-edits.txt").write_text("\n".join(outside) + "\n")
    applied = [o.entity.rsplit("/", 1)[1] for o in outcomes if o.status == "applied"]
    synced = next(key for key in applied if key not in outside)
    (out / "synced-contact.txt").write_text(synced + "\n")
    (out / "ledger.toml").write_text(
        f'[systems.crm]\ntype = "sql"\nurl = "sqlite:///{crm.resolve()}"\n'
        'collections.contacts = { table = "contacts", key = ["id"] }\n'
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
