"""Reconciliations as lane evidence, on a real store and a real SQLite target (the SQL adapter):
each check recorded, the last one read back, the drift trigger pausing the lanes of the
collection's system, and a clean reconciliation after repairs proving a re-enable rule."""

import pytest
import sqlalchemy as sa
from crm_tables import make_contacts

from adapters.sql import SqlAdapter, SqlCollection
from ledger import (
    Address,
    Change,
    Point,
    ReconcileScope,
    Run,
    Target,
    apply_reconciliation,
    check_reconciliation,
    last_reconciliation,
    plan_reconciliation,
    record_reconciliation,
)
from ledger.errors import InvalidChange, ReenableRefused
from ledger.lane_control import enable_lane, lane
from ledger.lane_evidence import SNAPSHOT_EVERY, reconciliation_log_id
from ledger.lanes import LaneConfig
from ledger.reenable import ReenableEvidence, ReenableRule
from ledger.triggers import Triggers

COUNT = 10
NOW = ReconcileScope()
LANES = {
    "lead-sync": LaneConfig("lead-sync", systems=("crm",), triggers=Triggers(drift_share=0.1)),
    "erp-sync": LaneConfig("erp-sync", systems=("erp",), triggers=Triggers(drift_share=0.1)),
}


@pytest.fixture
def crm(ledger, tmp_path):
    """A CRM of ten contacts the ledger knows (a run set every stage to 'sql')."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = make_contacts(url, COUNT, stage="lead")
    adapter = SqlAdapter("crm", url, {"contacts": SqlCollection("contacts")})
    with Run(ledger, "run-1", workflow="lead-sync") as run:
        run.apply(
            Target(adapter, "contacts"),
            [
                Change(Address("crm", "contacts", f"{i:05d}"), "update", values={"stage": "sql"})
                for i in range(COUNT)
            ],
        )
    yield engine, adapter
    adapter.close()
    engine.dispose()


def outside_edit(engine, *keys):
    with engine.begin() as connection:
        for key in keys:
            connection.execute(
                sa.text("UPDATE contacts SET stage = 'customer' WHERE id = :id"), {"id": key}
            )


def test_a_check_is_recorded_and_read_back_as_the_last_reconciliation(ledger, crm):
    engine, adapter = crm
    assert last_reconciliation(ledger, "crm/contacts") is None
    clean = check_reconciliation(ledger, adapter, "contacts", NOW, actor="alice")
    assert clean.report.clean and clean.recorded.actor == "alice"
    outside_edit(engine, "00001", "00002")
    found = check_reconciliation(ledger, adapter, "contacts", NOW, actor="bob")
    last = last_reconciliation(ledger, "crm/contacts")
    assert (last.collection, last.drifted, last.checked) == ("crm/contacts", 2, COUNT)
    assert last == found.recorded.reconciliation and last.at > clean.recorded.reconciliation.at
    assert found.to_json()["recorded"]["actor"] == "bob"


def test_drift_above_a_lanes_share_pauses_the_lanes_of_that_system(ledger, crm):
    engine, adapter = crm
    outside_edit(engine, "00001", "00002")  # 2 of 10: 20% > 10%
    found = check_reconciliation(ledger, adapter, "contacts", NOW, actor="cron", lanes=LANES)
    [tripped] = found.recorded.trips
    assert (tripped.workflow, tripped.trip.trigger, tripped.paused_now) == (
        "lead-sync",
        "drift_share",
        True,
    )
    paused = lane(ledger, "lead-sync").pause
    assert paused.trigger == "drift_share"
    assert paused.evidence == {
        "rule": "2 of 10 records of crm/contacts drifted (20.0%), more than 10.0%",
        "collection": "crm/contacts",
        "drifted": 2,
        "total": COUNT,
        "above": 0.1,
    }
    assert lane(ledger, "erp-sync").state == "active"  # it touches another system


def test_drift_within_a_lanes_share_leaves_it_active(ledger, crm):
    engine, adapter = crm
    outside_edit(engine, "00001")  # 1 of 10: 10%, not more
    found = check_reconciliation(ledger, adapter, "contacts", NOW, actor="cron", lanes=LANES)
    assert found.report.drifted == 1 and found.recorded.trips == ()
    assert lane(ledger, "lead-sync").state == "active"


def test_a_check_of_the_past_or_of_tracked_records_only_is_not_recorded(ledger, crm):
    engine, adapter = crm
    outside_edit(engine, "00001", "00002", "00003")
    for scope in (ReconcileScope(at=Point.parse("position:1")), ReconcileScope(tracked_only=True)):
        found = check_reconciliation(ledger, adapter, "contacts", scope, actor="a", lanes=LANES)
        assert found.recorded is None
    assert last_reconciliation(ledger, "crm/contacts") is None
    assert lane(ledger, "lead-sync").state == "active"


def test_a_clean_reconciliation_after_repairs_proves_a_reconciled_rule(ledger, crm):
    engine, adapter = crm
    outside_edit(engine, "00001", "00002")
    check_reconciliation(ledger, adapter, "contacts", NOW, actor="cron", lanes=LANES)
    rule = ReenableRule(reconciled=("crm/contacts",))

    def evidence():
        return ReenableEvidence({"crm/contacts": last_reconciliation(ledger, "crm/contacts")})

    with pytest.raises(ReenableRefused, match="last reconciled before the pause"):
        enable_lane(ledger, "lead-sync", "ops", "fixed", rule=rule, evidence=evidence())
    check_reconciliation(ledger, adapter, "contacts", NOW, actor="cron", lanes=LANES)
    with pytest.raises(ReenableRefused, match="last reconciliation found 2 drifted records"):
        enable_lane(ledger, "lead-sync", "ops", "fixed", rule=rule, evidence=evidence())
    made = plan_reconciliation(ledger, adapter, "contacts", "ledger")
    result = apply_reconciliation(ledger, adapter, made, actor="ops", lanes=LANES)
    assert result.counts == {"applied": 2} and result.verification.clean
    assert result.recorded.reconciliation.drifted == 0
    enabled = enable_lane(ledger, "lead-sync", "ops", "fixed", rule=rule, evidence=evidence())
    assert enabled.lane.state == "active"
    assert enabled.check.met[0].startswith("crm/contacts reconciled clean at ")


def test_the_last_of_many_checks_is_read_from_a_snapshot(ledger):
    for drifted in range(SNAPSHOT_EVERY + 1):
        record_reconciliation(ledger, "crm/contacts", drifted, 1000, actor="cron")
    assert last_reconciliation(ledger, "crm/contacts").drifted == SNAPSHOT_EVERY
    snapshots = list(ledger.snapshots.get(reconciliation_log_id("crm/contacts")))
    assert [s.originator_version for s in snapshots] == [SNAPSHOT_EVERY]


@pytest.mark.parametrize(
    "collection, drifted, checked", [("contacts", 0, 1), ("crm/contacts", 3, 2)]
)
def test_a_reconciliation_that_is_not_one_is_refused(ledger, collection, drifted, checked):
    with pytest.raises(InvalidChange, match=f"a reconciliation of {collection!r}"):
        record_reconciliation(ledger, collection, drifted, checked, actor="cron")
