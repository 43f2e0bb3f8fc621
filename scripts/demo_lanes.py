"""Golden path, step 8's setup: the `lead-sync` lane row (a field guard and a re-enable rule),
a second lead-sync run whose later chunks move stages backwards, and a tampered copy of the
ledger for `ledger verify` to catch.

    python scripts/demo_lanes.py lane OUT      # the lane row, and run-2.jsonl
    python scripts/demo_lanes.py tamper OUT    # OUT/tampered.db: one byte of one event changed
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

LANE = """
[lanes.lead-sync]
owner = "revops@example.com"
systems = ["crm"]
notify = ["log"]
repair = "rollback"

[lanes.lead-sync.triggers]
fields.lifecycle_stage = { order = ["subscriber", "lead", "mql", "sql", "customer"] }

[lanes.lead-sync.reenable]
reconciled = ["crm/contacts"]
approver = true

[notifiers.log]
type = "log"
"""


def lane(out: Path) -> None:
    """The lane row, and a run that promotes 500 contacts to `sql`, then (a broken stage
    mapping) sends the next 1,000 back to `subscriber`."""
    with (out / "ledger.toml").open("a") as config:
        config.write(LANE)
    with sqlite3.connect(out / "crm.db") as crm:
        contacts = crm.execute(
            "SELECT id FROM contacts WHERE lifecycle_stage IN ('subscriber', 'lead', 'mql') "
            "ORDER BY id LIMIT 1500"
        ).fetchall()
    with (out / "run-2.jsonl").open("w") as run:
        for number, (key,) in enumerate(contacts):
            stage = "sql" if number < 500 else "subscriber"
            change = {"lifecycle_stage": stage}
            run.write(json.dumps({"entity": f"crm/contacts/{key}", "op": "update", "set": change}))
            run.write("\n")
    print("lane lead-sync: lifecycle_stage may not move backwards; re-enable needs a clean")
    print("reconciliation of crm/contacts and an approver; run-2.jsonl: 1,500 stage changes")


def tamper(out: Path) -> None:
    """A copy of the ledger with one byte of one stored event's state changed."""
    copy = out / "tampered.db"
    shutil.copyfile(out / "ledger.db", copy)
    for suffix in (".key", ".pub"):
        shutil.copyfile(out / f"ledger.db{suffix}", out / f"tampered.db{suffix}")
    with sqlite3.connect(copy) as db:
        rowid, state = db.execute(
            "SELECT rowid, state FROM stored_events ORDER BY rowid LIMIT 1 OFFSET 100"
        ).fetchone()
        changed = bytearray(state)
        changed[len(changed) // 2] ^= 0x01
        db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (bytes(changed), rowid))
    print(f"tampered.db: one bit of event row {rowid} flipped")


if __name__ == "__main__":
    {"lane": lane, "tamper": tamper}[sys.argv[1]](Path(sys.argv[2]))
