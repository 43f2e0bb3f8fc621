"""Notices and metrics from events other modules record, matched by their topic: reconciliations
(drift) and saved rollback plans. Each test needs the module that records those events and is
skipped, saying so, where it is not there yet."""

from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time
from test_metrics import samples

from ledger import Address, Change, Ledger
from ledger.lanes import LaneConfig
from ledger.notify import read_notices

LANES = {
    "lead-sync": LaneConfig("lead-sync", systems=("crm",), notify=("ops",)),
    "billing": LaneConfig("billing", systems=("erp",)),
}


def test_drift_is_told_to_the_lanes_of_the_collections_system(ledger: Ledger) -> None:
    evidence = pytest.importorskip("ledger.lane_evidence", reason="reconciliations not recorded")
    evidence.record_reconciliation(ledger, "crm/contacts", 3, 100, actor="cron")
    evidence.record_reconciliation(ledger, "crm/contacts", 0, 100, actor="cron")
    notices = read_notices(ledger, 0, ledger.recorder.max_notification_id(), LANES)
    assert [(n.kind, n.workflows, n.details["drifted"]) for n in notices] == [
        ("drift.found", ("lead-sync",), 3)
    ]
    found = samples(ledger)
    assert found["ledger_reconciliations_total{collection=crm/contacts,result=drift}"] == 1
    assert found["ledger_reconciliations_total{collection=crm/contacts,result=clean}"] == 1
    assert found["ledger_drift_records{collection=crm/contacts}"] == 0


def test_a_saved_plan_is_told_and_its_wait_until_applied_measured(ledger: Ledger) -> None:
    records = pytest.importorskip("ledger.rollback.records", reason="plans not recorded")
    with freeze_time("2026-11-28 09:00:00") as clock:
        for plan, conflicts in (("p1", 2), ("p2", 0)):
            record = records.PlanRecord.start(plan)
            record.trigger_event(
                records.PlanRecord.Saved,
                seal="s",
                planner="ana",
                workflows=["lead-sync"],
                direction="undo",
                path="/tmp/plan.bin",
                reason="tripped",
                compensations=5,
                conflicts=conflicts,
            )
            ledger.save(record)
        clock.tick(timedelta(minutes=10))
        ledger.record(
            Change(Address.parse("crm/contacts/1"), "create", values={"n": 1}),
            batch="rollback-p1",
        )
        ledger.close_batch("rollback-p1")
    notices = read_notices(ledger, 0, ledger.recorder.max_notification_id(), LANES)
    planned = [n for n in notices if n.kind == "rollback.planned"]
    assert [(n.details["plan"], n.workflows) for n in planned] == [
        ("p1", ("lead-sync",)),
        ("p2", ("lead-sync",)),
    ]
    found = samples(ledger)
    assert found["ledger_rollback_plans_total"] == 2
    assert found["ledger_rollback_plans_with_conflicts_total"] == 1
    assert found["ledger_rollback_conflicts_total"] == 2
    assert found["ledger_rollback_conflict_ratio"] == 0.5
    assert found["ledger_rollback_plan_to_applied_seconds_count"] == 1
    assert found["ledger_rollback_plan_to_applied_seconds_sum"] == 600
    assert found["ledger_rollback_plan_to_applied_seconds_bucket{le=300.0}"] == 0
    assert found["ledger_rollback_plan_to_applied_seconds_bucket{le=900.0}"] == 1
