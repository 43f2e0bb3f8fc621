"""Rollback plans and lanes on a real store and a real SQLite target (the SQL adapter): the
two-person rule bound to the plan's seal, the rollback-conflict trigger and the plan a lane
makes when it trips."""

import pytest
import sqlalchemy as sa
from crm_tables import make_contacts

from adapters.sql import SqlAdapter, SqlCollection
from ledger import (
    Address,
    Change,
    RollbackPlan,
    RollbackScope,
    Run,
    Target,
    apply_rollback,
    approve_rollback_plan,
    plan_rollback,
    plan_tripped_rollback,
    rollback_plans,
)
from ledger.errors import ApprovalRefused, ApprovalRequired, InvalidChange, NotFound
from ledger.lane_control import lane
from ledger.lanes import LaneConfig
from ledger.plan_seal import seal
from ledger.rollback import judge_rollback_plan, save_plan
from ledger.rollback.plan import PLAN_FORMAT
from ledger.transcoder import OrjsonTranscoder
from ledger.triggers import Triggers

WORKFLOW = "lead-sync"
TWO_PERSONS = {WORKFLOW: LaneConfig(WORKFLOW, systems=("crm",), approval="two-person")}
COUNT = 6


@pytest.fixture
def crm(tmp_path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = make_contacts(url, COUNT, stage="lead", owner="ann")
    adapter = SqlAdapter("crm", url, {"contacts": SqlCollection("contacts")})
    yield engine, adapter
    adapter.close()
    engine.dispose()


def rows(engine):
    with engine.connect() as connection:
        return {
            r[0]: (r[1], r[2])
            for r in connection.execute(sa.text("SELECT id, stage, owner FROM contacts"))
        }


def outside_edit(engine, *keys):
    with engine.begin() as connection:
        for key in keys:
            connection.execute(
                sa.text("UPDATE contacts SET owner = 'zed' WHERE id = :id"), {"id": key}
            )


def run_batch(ledger, adapter, batch="run-1", workflow=WORKFLOW):
    with Run(ledger, batch, workflow=workflow) as run:
        run.apply(
            Target(adapter, "contacts"),
            [
                Change(
                    Address("crm", "contacts", f"{i:05d}"),
                    "update",
                    values={"stage": "sql", "owner": "dara"},
                )
                for i in range(COUNT)
            ],
        )


def planned(ledger, adapter, tmp_path, planner="alice", batch="run-1"):
    made = plan_rollback(ledger, RollbackScope(batches=(batch,)), {"crm": adapter}, planner=planner)
    path = tmp_path / "plan.bin"
    save_plan(ledger, made, path, reason="test")
    return made, path


def test_a_plan_carries_its_planner_and_workflows_under_its_seal(ledger, crm, tmp_path):
    _engine, adapter = crm
    run_batch(ledger, adapter)
    made, path = planned(ledger, adapter, tmp_path)
    loaded = RollbackPlan.loads(path.read_bytes())
    assert (loaded.planner, loaded.workflows) == ("alice", (WORKFLOW,))
    assert loaded.seal == made.seal and loaded == made


def test_the_planner_cannot_approve_their_own_plan(ledger, crm, tmp_path):
    _engine, adapter = crm
    run_batch(ledger, adapter)
    made, _ = planned(ledger, adapter, tmp_path)
    with pytest.raises(ApprovalRefused) as refused:
        approve_rollback_plan(ledger, made, "alice")
    assert f"rollback plan {made.id} was planned by alice; someone else" in str(refused.value)
    assert lane(ledger, WORKFLOW).approvals == ()


def test_another_person_approves_and_the_plan_applies_restoring_every_field(ledger, crm, tmp_path):
    engine, adapter = crm
    before = rows(engine)
    run_batch(ledger, adapter)
    _, path = planned(ledger, adapter, tmp_path)
    saved = RollbackPlan.loads(path.read_bytes())
    approval = approve_rollback_plan(ledger, saved, "bob")
    assert (approval.saved.planner, approval.approver) == ("alice", "bob")
    [record] = lane(ledger, WORKFLOW).approvals
    assert (record.plan, record.seal, record.planner, record.approver) == (
        saved.id,
        saved.seal,
        "alice",
        "bob",
    )
    report = apply_rollback(ledger, saved, {"crm": adapter}, actor="carol", lanes=TWO_PERSONS)
    assert report.counts == {"restored": COUNT} and report.mismatches == []
    assert rows(engine) == before
    [status] = rollback_plans(ledger)
    assert (status.status, [a.approver for a in status.approvals]) == ("applied", ["bob"])


def test_an_unapproved_plan_of_a_two_person_lane_is_refused_before_anything_is_written(
    ledger, crm, tmp_path
):
    engine, adapter = crm
    run_batch(ledger, adapter)
    made, _ = planned(ledger, adapter, tmp_path)
    after_run, position = rows(engine), ledger.recorder.max_notification_id()
    with pytest.raises(ApprovalRequired) as refused:
        apply_rollback(ledger, made, {"crm": adapter}, lanes=TWO_PERSONS)
    message = str(refused.value)
    assert f"rollback plan {made.id} of workflow {WORKFLOW!r}" in message
    assert f"`ledger rollback approve {made.id}`" in message
    assert "nothing was applied" in message and f"lane {WORKFLOW!r} asks for two persons" in message
    assert rows(engine) == after_run
    assert ledger.recorder.max_notification_id() == position


def test_a_lane_without_approval_applies_without_one(ledger, crm, tmp_path):
    engine, adapter = crm
    before = rows(engine)
    run_batch(ledger, adapter)
    made, _ = planned(ledger, adapter, tmp_path)
    lanes = {WORKFLOW: LaneConfig(WORKFLOW, systems=("crm",))}
    report = apply_rollback(ledger, made, {"crm": adapter}, lanes=lanes)
    assert report.counts == {"restored": COUNT}
    assert rows(engine) == before


def test_a_plan_of_another_workflows_actions_needs_no_two_person_approval(ledger, crm, tmp_path):
    _engine, adapter = crm
    run_batch(ledger, adapter, workflow="other-sync")
    made, _ = planned(ledger, adapter, tmp_path)
    report = apply_rollback(ledger, made, {"crm": adapter}, lanes=TWO_PERSONS)
    assert report.counts == {"restored": COUNT}  # the two-person lane's actions are not in it


def resealed(path, **changes):
    """The plan file edited and sealed again, as someone who can recompute the digest would."""
    header, _, compensations = path.read_bytes().partition(b"\n")
    content = OrjsonTranscoder().decode(header)["plan"]
    path.write_bytes(seal(PLAN_FORMAT, {**content, **changes}) + b"\n" + compensations)
    return RollbackPlan.loads(path.read_bytes())


def test_a_plan_altered_after_its_approval_is_refused(ledger, crm, tmp_path):
    engine, adapter = crm
    run_batch(ledger, adapter)
    made, path = planned(ledger, adapter, tmp_path)
    approve_rollback_plan(ledger, made, "bob")
    after_run = rows(engine)
    altered = resealed(path, conflicts=[], planner="mallory")
    with pytest.raises(ApprovalRequired) as refused:
        apply_rollback(ledger, altered, {"crm": adapter}, lanes=TWO_PERSONS)
    message = str(refused.value)
    assert f"rollback plan {made.id} was altered after bob approved it" in message
    assert f"lane {WORKFLOW!r}" in message and "nothing was applied" in message
    assert rows(engine) == after_run
    # Nor can the altered plan be approved: the ledger never recorded its seal.
    with pytest.raises(InvalidChange, match="not a plan this ledger recorded as saved"):
        approve_rollback_plan(ledger, altered, "bob")


def test_a_plan_file_edited_without_its_seal_is_refused_when_loaded(ledger, crm, tmp_path):
    _engine, adapter = crm
    run_batch(ledger, adapter)
    _, path = planned(ledger, adapter, tmp_path)
    path.write_bytes(path.read_bytes().replace(b'"alice"', b'"bobby"'))
    with pytest.raises(InvalidChange, match="altered after it was saved"):
        RollbackPlan.loads(path.read_bytes())


def test_a_plan_saved_once_is_approved_by_its_id(ledger, crm, tmp_path):
    _engine, adapter = crm
    run_batch(ledger, adapter)
    made, _ = planned(ledger, adapter, tmp_path)
    approval = approve_rollback_plan(ledger, made.id, "bob")
    assert approval.saved.seal == made.seal
    with pytest.raises(NotFound, match="no saved rollback plan 'nope'"):
        approve_rollback_plan(ledger, "nope", "bob")


def test_a_plan_with_more_conflicts_than_the_lane_accepts_pauses_it(ledger, crm, tmp_path):
    engine, adapter = crm
    run_batch(ledger, adapter)
    outside_edit(engine, "00001", "00002", "00003")
    made = plan_rollback(ledger, RollbackScope(batches=("run-1",)), {"crm": adapter})
    assert len(made.conflicts) == 3
    strict = {WORKFLOW: LaneConfig(WORKFLOW, triggers=Triggers(rollback_conflicts=2))}
    [tripped] = judge_rollback_plan(ledger, made, strict)
    assert (tripped.workflow, tripped.trip.trigger, tripped.paused_now) == (
        WORKFLOW,
        "rollback_conflicts",
        True,
    )
    view = lane(ledger, WORKFLOW)
    assert view.state == "paused" and view.pause.trigger == "rollback_conflicts"
    assert view.pause.evidence == {
        "rule": f"rollback plan {made.id} has 3 conflicts, more than 2",
        "plan": made.id,
        "conflicts": 3,
        "more_than": 2,
    }


def test_a_plan_within_the_lanes_conflict_limit_leaves_it_active(ledger, crm, tmp_path):
    engine, adapter = crm
    run_batch(ledger, adapter)
    outside_edit(engine, "00001", "00002", "00003")
    made = plan_rollback(ledger, RollbackScope(batches=("run-1",)), {"crm": adapter})
    lenient = {WORKFLOW: LaneConfig(WORKFLOW, triggers=Triggers(rollback_conflicts=3))}
    assert judge_rollback_plan(ledger, made, lenient) == ()
    assert lane(ledger, WORKFLOW).state == "active"


def test_a_tripped_lane_plans_the_rollback_of_its_batch_ready_for_approval(ledger, crm, tmp_path):
    engine, adapter = crm
    before = rows(engine)
    run_batch(ledger, adapter)
    made = plan_tripped_rollback(
        ledger, {"crm": adapter}, WORKFLOW, "run-1", directory=tmp_path / "plans"
    )
    assert rows(engine) != before  # a dry run: nothing was written to the target
    path = tmp_path / "plans" / f"rollback-{made.id}.plan"
    assert RollbackPlan.loads(path.read_bytes()) == made
    [status] = rollback_plans(ledger)
    assert (status.saved.plan, status.saved.path, status.status) == (
        made.id,
        str(path.resolve()),
        "not applied",
    )
    assert status.saved.reason == f"lane {WORKFLOW} tripped in batch run-1"
    assert status.saved.planner == f"lane {WORKFLOW} (on trip)"
    approve_rollback_plan(ledger, made.id, "bob")
    report = apply_rollback(
        ledger, RollbackPlan.loads(path.read_bytes()), {"crm": adapter}, lanes=TWO_PERSONS
    )
    assert report.counts == {"restored": COUNT}
    assert rows(engine) == before
