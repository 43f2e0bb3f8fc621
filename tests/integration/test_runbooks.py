"""A workflow's runbook from its lane row and live data, on a real store and a real SQLite
target: the numbers a reader checks (records and actions per collection, the dry run's
compensations and conflicts) and every section."""

import re

import pytest
import sqlalchemy as sa
from crm_tables import make_contacts

from adapters.sql import SqlAdapter, SqlCollection
from ledger import Address, Change, runbook
from ledger.lane_control import pause_lane, trip_lane
from ledger.lane_evidence import record_reconciliation
from ledger.lanes import LaneConfig
from ledger.reenable import ReenableRule
from ledger.runs import Run, Target
from ledger.triggers import FieldGuard, RateLimit, Triggers, Trip, VolumeLimit

SECTIONS = [
    "## State now",
    "## Owner",
    "## Affected systems",
    "## Stop triggers",
    "## The last batch, and rolling it back",
    "## How to verify",
    "## Who to notify",
    "## Re-enable rule",
    "## Repair",
]
LANE = LaneConfig(
    "lead-sync",
    owner="revops@example.com",
    systems=("crm", "erp"),
    notify=("log", "webhook"),
    repair="rollback",
    approval="two-person",
    on_trip="plan-rollback",
    triggers=Triggers(
        failure_rate=RateLimit(0.05, 50),
        volume={"delete": VolumeLimit(more_than=200)},
        fields={"stage": FieldGuard(order=("lead", "mql", "sql"))},
        rollback_conflicts=0,
    ),
    reenable=ReenableRule(reconciled=("crm/contacts",), canary=50, approver=True),
)


@pytest.fixture
def crm(tmp_path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = make_contacts(url, 6, stage="lead", owner="ann")
    adapter = SqlAdapter("crm", url, {"contacts": SqlCollection("contacts")})
    yield engine, adapter
    adapter.close()
    engine.dispose()


def run_batches(ledger, adapter):
    """Batch sync-1 updates contacts 0-3; sync-2 (the last) updates 2-5: six records, eight
    actions of the workflow."""
    contacts = Target(adapter, "contacts")
    for batch, keys, stage in (("sync-1", range(4), "mql"), ("sync-2", range(2, 6), "sql")):
        with Run(ledger, batch, workflow="lead-sync", workflow_version="7") as run:
            run.apply(
                contacts,
                [
                    Change(
                        Address("crm", "contacts", f"{i:05d}"), "update", values={"stage": stage}
                    )
                    for i in keys
                ],
            )


def sections(document):
    return [line for line in document.splitlines() if line.startswith("## ")]


def section(document, heading):
    body = document.split(f"## {heading}\n", 1)[1]
    return body.split("\n## ", 1)[0]


def test_a_paused_lane_with_triggers_gets_every_section_and_its_numbers(ledger, crm):
    engine, adapter = crm
    run_batches(ledger, adapter)
    with engine.begin() as connection:  # someone edits two records of the last batch
        connection.execute(
            sa.text("UPDATE contacts SET owner = 'zed' WHERE id IN ('00004', '00005')")
        )
    trip = Trip("deletes", "250 deletes in this run, more than 200", {"count": 250})
    trip_lane(ledger, "lead-sync", trip, batch="sync-2")
    document = runbook(ledger, "lead-sync", LANE, {"crm": adapter})
    assert document.startswith("# Runbook: lead-sync\n")
    assert sections(document) == SECTIONS
    assert "No lane is configured" not in document
    state = section(document, "State now")
    assert "**Paused** by stop trigger `deletes`" in state
    assert "in batch `sync-2`: deletes tripped: 250 deletes in this run" in state
    assert "Last run: batch `sync-2`, closed, 4 actions." in state
    assert section(document, "Owner").strip() == "revops@example.com"
    systems = section(document, "Affected systems")
    assert "| crm | contacts | 6 | 8 |" in systems
    assert "Declared but not touched yet: erp." in systems
    triggers = section(document, "Stop triggers")
    assert "- more than 5.0% of a run's writes failed, once it made 50 attempts" in triggers
    assert "- more than 200 deletes in one run" in triggers
    assert '- `stage` moving backwards in "lead" → "mql" → "sql"' in triggers
    assert "- a rollback plan with more than 0 conflicts" in triggers
    assert "plans the rollback of the batch that tripped" in triggers
    assert "approved by someone other than its planner" in triggers
    last = section(document, "The last batch, and rolling it back")
    assert "Batch `sync-2` (closed, 4 actions" in last
    assert "workflow version 7" in last
    counts = re.search(r"would: (.*); (\d+) conflicts left for review; (\d+) already", last)
    assert counts is not None
    assert counts.groups() == ("2 to restore", "2", "0")
    assert "| crm/contacts/00004 | drift in the target | owner |" in last
    assert "| crm/contacts/00005 | drift in the target | owner |" in last
    assert "more than the 0 conflicts its lane accepts: it would trip" in last
    verify = section(document, "How to verify")
    assert "`ledger rollback check --batch sync-2`" in verify
    assert "`ledger reconcile check crm/contacts`" in verify
    assert "`ledger verify`" in verify
    assert section(document, "Who to notify").strip() == "`log`, `webhook`"
    reenable = section(document, "Re-enable rule")
    assert "the last reconciliation of crm/contacts, after the pause, is clean" in reenable
    assert "(never reconciled yet)" in reenable and "(no canary has run)" in reenable
    assert "a canary run of at least 50 actions" in reenable
    assert "someone other than the pauser and the enabler signed off" in reenable
    assert "`ledger rollback plan --batch sync-2`" in section(document, "Repair")
    assert [row["stage"] for row in _rows(engine)] == ["mql", "mql", "sql", "sql", "sql", "sql"]


def test_without_adapters_the_dry_run_says_what_it_needs(ledger, crm):
    _, adapter = crm
    run_batches(ledger, adapter)
    pause_lane(ledger, "lead-sync", "owners look wrong", "alice")
    record_reconciliation(ledger, "crm/contacts", 2, 6, actor="bob")
    document = runbook(ledger, "lead-sync", LANE)
    assert "is clean (last reconciled " in section(document, "Re-enable rule")
    assert ": 2 of 6 drifted)" in section(document, "Re-enable rule")
    assert "**Paused** by alice at " in section(document, "State now")
    assert "owners look wrong" in section(document, "State now")
    last = section(document, "The last batch, and rolling it back")
    assert "needs to read the records it touched from crm: configure [systems.crm]" in last
    assert "`ledger rollback plan --batch sync-2`" in last


def test_a_workflow_without_a_lane_gets_a_runbook_from_live_data(ledger):
    for key in ("1", "2", "3"):
        ledger.record(
            Change(Address("erp", "orders", key), "create", values={"total": 10}),
            batch="nightly-1",
            workflow="billing",
        )
    ledger.record(
        Change(Address("erp", "orders", "1"), "update", values={"total": 12}),
        batch="nightly-2",
        workflow="billing",
    )
    ledger.record(
        Change(Address("crm", "accounts", "9"), "create", values={"tier": "gold"}),
        batch="nightly-2",
        workflow="billing",
    )
    document = runbook(ledger, "billing", None)
    assert sections(document) == SECTIONS
    assert "**No lane is configured** for `billing`" in document
    assert "add a `[lanes.billing]` row" in document
    assert "**Active**" in section(document, "State now")
    systems = section(document, "Affected systems")
    assert "| crm | accounts | 1 | 1 |" in systems
    assert "| erp | orders | 3 | 4 |" in systems
    assert "None declared" in section(document, "Stop triggers")
    last = section(document, "The last batch, and rolling it back")
    assert "Batch `nightly-2` (open, 2 actions" in last
    assert "from crm, erp: configure [systems.crm], [systems.erp]" in last
    assert section(document, "Owner").strip() == "Not declared."
    assert "No proof is asked" in section(document, "Re-enable rule")
    assert "Not declared; the ledger's repair is a rollback." in section(document, "Repair")


def test_a_workflow_with_no_action_yet_says_so(ledger):
    document = runbook(ledger, "quiet", LaneConfig("quiet", owner="ops"))
    assert "The ledger holds no action of this workflow yet." in document
    assert "No batch yet." in document


def _rows(engine):
    with engine.connect() as connection:
        query = sa.text("SELECT id, stage FROM contacts ORDER BY id")
        return [dict(row._mapping) for row in connection.execute(query)]
