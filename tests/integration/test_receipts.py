"""Receipts on a real store (SQLite file, PostgreSQL) and a real SQLite target: one action
explained from its events — what was proposed, what was written, the checks it passed, how it
was corrected and what stands in the way now."""

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from crm_tables import make_contacts
from freezegun import freeze_time

from adapters.sql import SqlAdapter, SqlCollection
from ledger import (
    ABSENT,
    Address,
    Change,
    RollbackScope,
    apply_rollback,
    plan_rollback,
    receipt,
)
from ledger.errors import InvalidChange, NotFound
from ledger.lane_control import allow_canary, approve_rollback, pause_lane
from ledger.lanes import LaneConfig
from ledger.rollback import Contract
from ledger.runs import Run, Target
from ledger.triggers import FieldGuard, Triggers

LANE = LaneConfig(
    "lead-sync",
    receipt_fields=("owner", "stage"),
    triggers=Triggers(fields={"stage": FieldGuard(order=("lead", "mql", "sql"))}),
)


@pytest.fixture
def crm(tmp_path):
    """A SQLite CRM of three contacts (stage lead, owner ann) and its adapter."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = make_contacts(url, 3, stage="lead", owner="ann")
    adapter = SqlAdapter("crm", url, {"contacts": SqlCollection("contacts")})
    yield engine, adapter
    adapter.close()
    engine.dispose()


def sync(ledger, adapter, batch="sync-1", **values):
    with Run(ledger, batch, workflow="lead-sync", workflow_version="7", actor="zapier") as run:
        return run.update(
            Target(adapter, "contacts"),
            "00001",
            values or {"stage": "sql"},
            inputs={"score": 91},
            trigger="score above 90",
            sources=("sheet/leads/17",),
        )


def stage_of(engine, key):
    with engine.connect() as connection:
        query = sa.text("SELECT stage FROM contacts WHERE id = :id")
        return connection.execute(query, {"id": key}).scalar_one()


def check(found, name):
    (match,) = [c for c in found.checks if c.name == name]
    return match


def test_a_recorded_action_explains_what_why_and_when(ledger):
    contact = Address.parse("crm/contacts/42")
    sheet = Address.parse("sheet/leads/17")
    with freeze_time("2026-11-20T08:00:00Z"):
        ledger.record(Change(sheet, "create", values={"score": 91}), batch="import-1")
    ledger.record(Change(contact, "create", values={"stage": "lead", "owner": "ann"}))
    done = ledger.record(
        Change(
            contact,
            "update",
            values={"stage": "sql"},
            inputs={"score": 91},
            trigger="score above 90",
            sources=("sheet/leads/17", "a note"),
            effective_at=datetime(2026, 11, 24, 9, 12, tzinfo=UTC),
        ),
        batch="sync-1",
        workflow="lead-sync",
        workflow_version="7",
        actor="zapier",
    )
    found = receipt(ledger, "crm/contacts/42@2", lanes={"lead-sync": LANE})
    assert found.action == done.action
    assert found.proposed is None  # recorded directly: no intent was declared
    assert found.highlight == {"owner": ("ann", "ann"), "stage": ("lead", "sql")}
    assert [(s.record, s.version) for s in found.sources] == [
        ("sheet/leads/17", 1),
        ("a note", None),
    ]
    assert found.sources[0].recorded_at == datetime(2026, 11, 20, 8, tzinfo=UTC)
    assert {c.name: c.status for c in found.checks} == {
        "before-values": "passed",
        "lane-gate": "passed",
        "stop-triggers": "unknown",  # no run record: recorded outside a run
        "field-guards": "passed",
    }
    document = found.to_json()
    assert document["what"] == {
        "entity": "crm/contacts/42",
        "system": "crm",
        "collection": "contacts",
        "key": "42",
        "version": 2,
        "position": done.action.position,
        "operation": "update",
        "workflow": "lead-sync",
        "workflow_version": "7",
        "batch": "sync-1",
        "actor": "zapier",
        "recorded_at": done.action.recorded_at.isoformat(),
        "effective_at": "2026-11-24T09:12:00+00:00",
        "requested": None,
        "moved_to": None,
    }
    assert document["why"]["trigger"] == "score above 90"
    assert document["why"]["inputs"] == {"score": 91}
    assert document["change"]["final"] == {"stage": ["lead", "sql"]}
    assert document["change"]["proposed"] is None
    assert document["correction"]["status"] == "standing"
    assert document["correction"]["compensation"]["set"] == {"stage": "lead"}


def test_an_applied_action_shows_the_intent_as_proposed_and_the_compare_and_set(ledger, crm):
    engine, adapter = crm
    outcome = sync(ledger, adapter)
    assert outcome.status == "applied"
    fingerprint = outcome.receipt.action.fingerprint
    found = receipt(ledger, fingerprint.removeprefix("sha256:")[:20], lanes={"lead-sync": LANE})
    assert found.action.fingerprint == fingerprint
    proposed = found.proposed
    assert proposed is not None
    assert (proposed.operation, proposed.values, proposed.unset) == ("update", {"stage": "sql"}, ())
    assert proposed.expected == {"stage": "lead"}  # what the write expected the target to hold
    assert (proposed.outcome, proposed.attempts) == ("applied", 1)
    assert proposed.declared_at <= found.action.recorded_at
    assert found.action.delta == {"stage": ("lead", "sql")}
    assert stage_of(engine, "00001") == "sql"
    cas = check(found, "compare-and-set")
    assert cas.status == "passed" and "expected stage" in cas.detail
    assert check(found, "written-as-proposed").status == "passed"
    assert check(found, "lane-gate").status == "passed"
    document = found.to_json()["change"]
    assert document["proposed"]["expected"] == {"stage": "lead"}
    assert document["final"] == {"stage": ["lead", "sql"]}
    assert document["highlight"] == {"owner": ["ann", "ann"], "stage": ["lead", "sql"]}


def test_a_field_guard_the_action_broke_is_a_failed_check(ledger, crm):
    _, adapter = crm
    sync(ledger, adapter, stage="sql")
    back = sync(ledger, adapter, batch="sync-2", stage="mql")
    found = receipt(ledger, back.receipt.action.fingerprint, lanes={"lead-sync": LANE})
    guard = check(found, "field-guards")
    assert guard.status == "failed"
    assert "stage moved backwards from 'sql' to 'mql'" in guard.detail


def test_a_write_recorded_while_its_lane_was_paused_fails_the_gate_and_a_canary_passes(ledger):
    contact = Address.parse("crm/contacts/42")
    ledger.record(Change(contact, "create", values={"stage": "lead"}), workflow="lead-sync")
    # The gate refuses such a write today; one recorded while the lane was paused (by a
    # version without the gate) is what the check catches: the pause is dated before it.
    with freeze_time("2026-11-28T10:00:00Z"):
        late = ledger.record(
            Change(contact, "update", values={"stage": "mql"}), workflow="lead-sync", batch="b2"
        )
    with freeze_time("2026-11-28T09:00:00Z"):
        pause_lane(ledger, "lead-sync", "owners look wrong", "alice")
    gate = check(receipt(ledger, late.action.fingerprint), "lane-gate")
    assert gate.status == "failed"
    assert "paused by alice" in gate.detail and "owners look wrong" in gate.detail
    with freeze_time("2026-11-28T11:00:00Z"):
        allow_canary(ledger, "lead-sync", "bob", "canary-1", 5)
        canary = ledger.record(
            Change(contact, "update", values={"stage": "sql"}),
            workflow="lead-sync",
            batch="canary-1",
        )
    gate = check(receipt(ledger, canary.action.fingerprint), "lane-gate")
    assert gate.status == "passed" and "admitted canary" in gate.detail


def test_a_compensated_action_names_the_rollback_action_and_its_batch(ledger, crm):
    engine, adapter = crm
    outcome = sync(ledger, adapter)
    plan = plan_rollback(ledger, RollbackScope(batches=("sync-1",)), {"crm": adapter})
    apply_rollback(ledger, plan, {"crm": adapter})
    assert stage_of(engine, "00001") == "lead"
    found = receipt(ledger, outcome.receipt.action.fingerprint)
    path = found.correction
    assert path.status == "compensated"
    (by,) = path.corrections
    assert (by.kind, by.batch, by.entity) == ("compensated", plan.batch, "crm/contacts/00001")
    assert by.fingerprint == f"rollback:{plan.id}:crm/contacts/00001"
    assert by.version == path.current_version == found.action.version + 1
    assert path.later_edits == () and not path.blocked
    # The rollback's own action, read the other way: what it compensates.
    undo = receipt(ledger, by.fingerprint)
    assert undo.action.compensates == (outcome.receipt.action.fingerprint,)
    assert undo.to_json()["correction"]["compensates"] == [outcome.receipt.action.fingerprint]
    assert undo.proposed is not None and undo.proposed.values == {"stage": "lead"}
    assert check(undo, "compare-and-set").status == "passed"


def test_a_replayed_action_says_so_after_its_compensation(ledger, crm):
    engine, adapter = crm
    outcome = sync(ledger, adapter)
    scope = RollbackScope(batches=("sync-1",))
    undo = plan_rollback(ledger, scope, {"crm": adapter})
    apply_rollback(ledger, undo, {"crm": adapter})
    redo = plan_rollback(ledger, scope, {"crm": adapter}, direction="redo")
    apply_rollback(ledger, redo, {"crm": adapter})
    assert stage_of(engine, "00001") == "sql"
    path = receipt(ledger, outcome.receipt.action.fingerprint).correction
    assert path.status == "replayed"
    assert [(c.kind, c.batch) for c in path.corrections] == [
        ("compensated", undo.batch),
        ("replayed", redo.batch),
    ]
    assert path.to_json()["corrections"][1]["batch"] == f"replay-{redo.id}"


def test_a_later_edit_by_someone_else_stands_in_the_way(ledger, crm):
    engine, adapter = crm
    outcome = sync(ledger, adapter)
    with engine.begin() as connection:  # someone edits the owner directly in the CRM
        connection.execute(sa.text("UPDATE contacts SET owner = 'zed' WHERE id = '00001'"))
    sync(ledger, adapter, batch="sync-2", stage="mql")  # the run adopts the outside edit first
    path = receipt(ledger, outcome.receipt.action.fingerprint).correction
    assert path.status == "standing" and path.blocked
    assert path.current_version == 4
    assert [(e.version, e.batch, e.actor, e.fields) for e in path.later_edits] == [
        (3, "observed", "external", ("owner",)),
        (4, "sync-2", "zapier", ("stage",)),
    ]
    assert path.fields_in_the_way == ("stage",)  # under `fields`, only stage competes
    document = path.to_json()
    assert document["blocked"] is True
    assert document["later_edits"][0]["fields"] == ["owner"]


def test_a_rollback_contract_shows_in_the_correction_path(ledger, crm):
    _, adapter = crm
    outcome = sync(ledger, adapter)
    contracts = {("crm", "contacts"): Contract(repair="notify", owner="revops")}
    found = receipt(ledger, outcome.receipt.action.fingerprint, contracts=contracts)
    assert found.correction.follow_up == (
        "notify: not reversible by a write (declared in the rollback contract) (owner: revops)"
    )
    assert check(found, "rollback-contract").status == "failed"


def test_an_ambiguous_prefix_is_refused_naming_the_candidates(ledger):
    contact = Address.parse("crm/contacts/42")
    first = ledger.record(Change(contact, "create", values={"n": 1}, fingerprint="job-1"))
    second = ledger.record(Change(contact, "update", values={"n": 2}, fingerprint="job-2"))
    with pytest.raises(InvalidChange) as refused:
        receipt(ledger, "job-")
    message = str(refused.value)
    assert "'job-' starts 2 fingerprints" in message
    assert "job-1 (crm/contacts/42@1)" in message and "job-2 (crm/contacts/42@2)" in message
    assert receipt(ledger, "job-2").action == second.action  # an exact match wins
    assert receipt(ledger, "job-1").action == first.action


def test_an_unknown_action_is_refused_by_name(ledger):
    contact = Address.parse("crm/contacts/42")
    ledger.record(Change(contact, "create", values={"n": 1}))
    with pytest.raises(NotFound, match="no action has fingerprint 'nope'"):
        receipt(ledger, "nope")
    with pytest.raises(NotFound, match="crm/contacts/42 has versions 1 to 1, not 3"):
        receipt(ledger, "crm/contacts/42@3")
    with pytest.raises(NotFound, match="crm/contacts/7 has no recorded actions"):
        receipt(ledger, "crm/contacts/7@1")


def test_a_field_the_record_never_had_is_absent_in_the_highlight(ledger):
    contact = Address.parse("crm/contacts/42")
    ledger.record(Change(contact, "create", values={"stage": "lead"}), workflow="lead-sync")
    found = receipt(ledger, "crm/contacts/42@1", lanes={"lead-sync": LANE})
    assert found.highlight["owner"] == (ABSENT, ABSENT)
    assert found.to_json()["change"]["highlight"]["owner"] == [{"$absent": True}] * 2


def test_a_delete_through_the_adapter_expected_the_whole_record(ledger, crm):
    engine, adapter = crm
    with Run(ledger, "purge-1", workflow="purge") as run:
        outcome = run.delete(Target(adapter, "contacts"), "00002")
    found = receipt(ledger, outcome.receipt.action.fingerprint)
    assert found.proposed is not None
    assert found.proposed.expected == {"owner": "ann", "stage": "lead"}  # the key is the address
    cas = check(found, "compare-and-set")
    assert cas.status == "passed" and "expected owner, stage" in cas.detail
    assert check(found, "written-as-proposed").status == "passed"
    assert found.correction.compensation["operation"] == "create"
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT COUNT(*) FROM contacts")).scalar_one() == 2


def test_a_rollback_action_shows_the_approval_of_its_plan(ledger, crm):
    _, adapter = crm
    outcome = sync(ledger, adapter)
    plan = plan_rollback(ledger, RollbackScope(batches=("sync-1",)), {"crm": adapter})
    approve_rollback(ledger, "lead-sync", plan.id, "sha256:seal", planner="alice", approver="bob")
    apply_rollback(ledger, plan, {"crm": adapter}, actor="alice")
    (by,) = receipt(ledger, outcome.receipt.action.fingerprint).correction.corrections
    undo = receipt(ledger, by.fingerprint)
    assert undo.review is not None
    assert (undo.review.decision, undo.review.by) == ("approved", "bob")
    assert f"rollback plan {plan.id} of workflow 'lead-sync', planned by alice" in (
        undo.review.subject
    )
    assert undo.to_json()["review"]["by"] == "bob"
    assert [c.name for c in undo.checks] == [
        "before-values",
        "compare-and-set",
        "written-as-proposed",
    ]  # a rollback's own action passes no lane gate: its plan's approval is its review
    assert receipt(ledger, outcome.receipt.action.fingerprint).review is None


def test_a_source_declared_with_its_time_is_judged_by_the_lanes_source_age(ledger):
    contact = Address.parse("crm/contacts/42")
    aged = LaneConfig("lead-sync", triggers=Triggers(source_age=timedelta(hours=24)))
    with freeze_time("2026-11-28T09:00:00Z"):
        done = ledger.record(
            Change(
                contact,
                "create",
                values={"stage": "lead"},
                sources=("sheet/leads/17@2026-11-26T08:00:00Z",),
            ),
            workflow="lead-sync",
        )
    found = receipt(ledger, done.action.fingerprint, lanes={"lead-sync": aged})
    (source,) = found.sources
    assert (source.record, source.version) == ("sheet/leads/17", None)
    assert source.declared_at == datetime(2026, 11, 26, 8, tzinfo=UTC)
    assert found.to_json()["why"]["sources"][0]["declared_at"] == "2026-11-26T08:00:00+00:00"
    age = check(found, "source-age")
    assert age.status == "failed" and "older than 1 day" in age.detail
