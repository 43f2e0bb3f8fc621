"""Lanes on a real store (SQLite file, PostgreSQL): pause, the gate, re-enable with proof,
canaries and the two-person rule, every change recorded as an event of the lane."""

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from ledger import Address, Change, open_ledger
from ledger.errors import (
    ApprovalRefused,
    ApprovalRequired,
    InvalidChange,
    LaneNotPaused,
    LanePaused,
    ReenableRefused,
)
from ledger.lane_control import (
    allow_canary,
    approve_rollback,
    canary_run,
    enable_lane,
    ensure_approved,
    ensure_open,
    lane,
    lanes,
    pause_lane,
    recent_runs,
    record_run,
    trip_lane,
)
from ledger.lanes import Lane, LaneConfig, lane_id
from ledger.reenable import CanaryRun, Reconciliation, ReenableEvidence, ReenableRule
from ledger.triggers import RunStatistics, Triggers, Trip, VolumeLimit, check_run

RULE = ReenableRule(reconciled=("crm/contacts",), canary=50, approver=True)
LATER = datetime.now(UTC) + timedelta(hours=1)


def proof(**changes):
    evidence = {
        "reconciliations": {"crm/contacts": Reconciliation("crm/contacts", 0, 2000, LATER)},
        "canary": CanaryRun("canary-1", 50, completed=True, tripped=False, at=LATER),
        "approver": "carol",
    }
    return ReenableEvidence(**{**evidence, **changes})


def test_a_paused_workflow_is_refused_at_the_gate_naming_who_when_and_why(ledger):
    ensure_open(ledger, ["lead-sync", None])
    result = pause_lane(ledger, "lead-sync", "owners look wrong", "alice")
    assert result.paused_now and result.lane.state == "paused"
    with pytest.raises(LanePaused) as refused:
        ensure_open(ledger, ["other", "lead-sync", "lead-sync"])
    message = str(refused.value)
    assert "'lead-sync' is paused (by alice, at " in message
    assert result.lane.pause.at.isoformat() in message and "owners look wrong" in message
    assert refused.value.workflow == "lead-sync"
    ensure_open(ledger, ["other"])


def test_pausing_twice_is_one_pause_and_says_so(ledger):
    first = pause_lane(ledger, "lead-sync", "first", "alice")
    again = pause_lane(ledger, "lead-sync", "second", "bob")
    assert not again.paused_now
    assert again.lane.pause == first.lane.pause
    assert "already paused by alice" in again.message and "nothing changed" in again.message
    stored = ledger.repository.get(lane_id("lead-sync"))
    assert stored.version == 2  # started and paused, nothing more


def test_a_pause_needs_a_reason_and_a_valid_workflow_name(ledger):
    with pytest.raises(InvalidChange, match="reason"):
        pause_lane(ledger, "lead-sync", "  ", "alice")
    with pytest.raises(InvalidChange, match="workflow 'lead sync'"):
        pause_lane(ledger, "lead sync", "why", "alice")
    assert lane(ledger, "lead-sync").state == "active"


def test_a_pause_by_another_process_is_seen_at_the_next_gate_check(ledger, db_url):
    ensure_open(ledger, ["lead-sync"])
    script = (
        "import sys; from ledger import open_ledger; from ledger.lane_control import pause_lane;"
        "pause_lane(open_ledger(sys.argv[1]), 'lead-sync', 'stop it', 'ops')"
    )
    subprocess.run([sys.executable, "-c", script, db_url], check=True)
    with pytest.raises(LanePaused, match="by ops"):
        ensure_open(ledger, ["lead-sync"])


def test_a_trip_pauses_with_its_trigger_and_evidence(ledger):
    trip = Trip("deletes", "201 deletes in this run, more than 200", {"count": 201})
    result = trip_lane(ledger, "lead-sync", trip, batch="run-7")
    pause = result.lane.pause
    assert (pause.trigger, pause.batch, pause.actor) == ("deletes", "run-7", "stop trigger deletes")
    assert pause.evidence == {"rule": trip.rule, "count": 201}
    assert result.lane.last_trip == pause
    with pytest.raises(LanePaused, match=r"stop trigger deletes.*201 deletes"):
        ensure_open(ledger, ["lead-sync"])

    assert lane(ledger, "lead-sync").last_trip.evidence["count"] == 201


def test_re_enable_is_refused_naming_each_unmet_condition(ledger):
    pause_lane(ledger, "lead-sync", "bad owners", "alice")
    drifted = Reconciliation("crm/contacts", 4, 2000, LATER)
    evidence = proof(
        reconciliations={"crm/contacts": drifted},
        canary=CanaryRun("canary-1", 50, completed=True, tripped=True, at=LATER),
        approver="alice",
    )
    with pytest.raises(ReenableRefused) as refused:
        enable_lane(ledger, "lead-sync", "bob", "fixed", rule=RULE, evidence=evidence)
    assert refused.value.unmet == (
        "crm/contacts's last reconciliation found 4 drifted records",
        "canary canary-1 tripped a stop trigger",
        "the approver alice must be someone other than the pauser and the enabler",
    )
    assert "stays paused" in str(refused.value)
    assert lane(ledger, "lead-sync").state == "paused"


def test_evidence_from_before_the_pause_proves_nothing(ledger):
    pause_lane(ledger, "lead-sync", "bad owners", "alice")
    earlier = datetime(2020, 1, 1, tzinfo=UTC)
    evidence = proof(
        reconciliations={"crm/contacts": Reconciliation("crm/contacts", 0, 10, earlier)},
        canary=CanaryRun("canary-0", 50, completed=True, tripped=False, at=earlier),
        approver=None,
    )
    with pytest.raises(ReenableRefused) as refused:
        enable_lane(ledger, "lead-sync", "bob", "fixed", rule=RULE, evidence=evidence)
    assert [why.split(" (")[0] for why in refused.value.unmet] == [
        "crm/contacts was last reconciled before the pause",
        "canary canary-0 ran before the pause",
        "no approver signed off",
    ]


def test_re_enable_with_proof_records_who_why_and_the_evidence(ledger):
    pause_lane(ledger, "lead-sync", "bad owners", "alice")
    result = enable_lane(ledger, "lead-sync", "bob", "owners fixed", rule=RULE, evidence=proof())
    assert result.check.holds and result.lane.state == "active"
    enabled = result.lane.last_enable
    assert (enabled.actor, enabled.reason, enabled.override) == ("bob", "owners fixed", False)
    assert enabled.proved[-1] == "approved by carol"
    assert enabled.evidence["canary"]["batch"] == "canary-1"
    assert lane(ledger, "lead-sync").last_enable == enabled
    ensure_open(ledger, ["lead-sync"])


def test_an_override_needs_a_reason_and_is_recorded_as_one(ledger):
    pause_lane(ledger, "lead-sync", "bad owners", "alice")
    with pytest.raises(InvalidChange, match="override needs a reason"):
        enable_lane(
            ledger, "lead-sync", "bob", "", rule=RULE, evidence=ReenableEvidence(), override=True
        )
    result = enable_lane(
        ledger,
        "lead-sync",
        "bob",
        "quarter close",
        rule=RULE,
        evidence=ReenableEvidence(),
        override=True,
    )
    assert result.lane.last_enable.override and result.lane.state == "active"
    assert len(result.lane.last_enable.evidence["unmet"]) == 3


def test_enabling_an_active_lane_is_refused_clearly(ledger):
    with pytest.raises(LaneNotPaused, match="'lead-sync' is active, not paused"):
        enable_lane(ledger, "lead-sync", "bob", "why", rule=RULE, evidence=proof())
    assert lane(ledger, "lead-sync").last_enable is None


def test_a_paused_lane_admits_only_its_canary_batch(ledger):
    pause_lane(ledger, "lead-sync", "bad owners", "alice")
    view = allow_canary(ledger, "lead-sync", "bob", "canary-1", 50)
    assert view.state == "paused" and view.canary.limit == 50
    canaries = ensure_open(ledger, ["lead-sync"], batch="canary-1")
    assert canaries["lead-sync"].limit == 50
    with pytest.raises(LanePaused):
        ensure_open(ledger, ["lead-sync"], batch="run-8")
    tripped = trip_lane(ledger, "lead-sync", Trip("too_few", "1 action", {}), batch="canary-1")
    assert tripped.paused_now and tripped.lane.canary is None
    assert tripped.lane.last_trip.batch == "canary-1"
    with pytest.raises(LanePaused, match="stop trigger too_few"):
        ensure_open(ledger, ["lead-sync"], batch="canary-1")
    with pytest.raises(LaneNotPaused):
        allow_canary(ledger, "other", "bob", "canary-2", 5)


def test_a_rollback_approval_by_its_planner_is_refused(ledger):
    with pytest.raises(ApprovalRefused, match="planned by alice; another person"):
        approve_rollback(ledger, "lead-sync", "p1", "sha256:aa", planner="alice", approver="alice")


def test_a_two_person_lane_applies_only_plans_approved_as_sealed(ledger):
    config = LaneConfig("lead-sync", approval="two-person")
    with pytest.raises(ApprovalRequired, match="needs another person's approval"):
        ensure_approved(ledger, config, "p1", "sha256:aa")
    approval = approve_rollback(
        ledger, "lead-sync", "p1", "sha256:aa", planner="alice", approver="bob"
    )
    assert ensure_approved(ledger, config, "p1", "sha256:aa") == approval
    with pytest.raises(ApprovalRequired, match="altered after bob approved it"):
        ensure_approved(ledger, config, "p1", "sha256:bb")
    assert ensure_approved(ledger, LaneConfig("lead-sync"), "p2", "sha256:cc") is None
    assert ensure_approved(ledger, None, "p2", "sha256:cc") is None


def test_lanes_lists_configured_and_recorded_lanes_with_their_last_run(ledger):
    ledger.record(
        Change(Address.parse("crm/contacts/1"), "create", values={"n": 1}),
        batch="run-1",
        workflow="lead-sync",
    )
    pause_lane(ledger, "billing", "invoices doubled", "alice")
    config = {"lead-sync": LaneConfig("lead-sync", owner="revops@example.com")}
    views = lanes(ledger, config)
    assert [(v.workflow, v.state) for v in views] == [
        ("billing", "paused"),
        ("lead-sync", "active"),
    ]
    assert views[1].last_run.name == "run-1" and views[1].config.owner == "revops@example.com"
    shown = views[0].to_json()
    assert shown["state"] == "paused" and shown["pause"]["actor"] == "alice"


def test_every_lane_change_is_an_event_of_its_aggregate(ledger):
    pause_lane(ledger, "lead-sync", "bad owners", "alice")
    enable_lane(ledger, "lead-sync", "bob", "ok", rule=ReenableRule(), evidence=ReenableEvidence())
    pause_lane(ledger, "lead-sync", "again", "carol")
    topics = [
        e.topic.rsplit(".", 1)[-1] for e in ledger.recorder.select_events(lane_id("lead-sync"))
    ]
    assert topics == ["Started", "Paused", "Enabled", "Paused"]
    stored = ledger.repository.get(lane_id("lead-sync"))
    assert isinstance(stored, Lane) and stored.paused.actor == "carol"


def test_two_processes_pausing_at_once_make_one_pause(ledger, db_url, monkeypatch):
    """The other process pauses between this one's read and its save: the save fails on the
    lane's version, the lane is read again and the second pause is no change."""
    from ledger import lane_control

    other = open_ledger(db_url)
    real_load = lane_control._load
    calls = []

    def load_then_lose_the_race(store, workflow):
        found = real_load(store, workflow)
        calls.append(found)
        if store is ledger and len(calls) == 1:
            pause_lane(other, workflow, "seen first", "ops")
        return found

    monkeypatch.setattr(lane_control, "_load", load_then_lose_the_race)
    result = pause_lane(ledger, "lead-sync", "seen second", "alice")
    other.close()
    assert calls[0] is None and not result.paused_now
    assert result.lane.pause.actor == "ops"
    assert len(list(ledger.recorder.select_events(lane_id("lead-sync")))) == 2


def test_recent_runs_give_the_volume_trigger_its_median(ledger):
    for number, updates in enumerate((90, 100, 110), start=1):
        batch = f"run-{number}"
        ledger.record(
            Change(Address.parse(f"crm/contacts/{number}"), "create", values={}),
            batch=batch,
            workflow="lead-sync",
        )
        statistics = RunStatistics()
        statistics.actions["update"] = updates
        record_run(ledger, "lead-sync", batch, statistics, completed=True)
        record_run(ledger, "lead-sync", batch, RunStatistics(), completed=False)  # kept once
    ledger.record(
        Change(Address.parse("crm/other/1"), "create", values={}),
        batch="other-1",
        workflow="billing",
    )
    recent = recent_runs(ledger, "lead-sync", 2)
    assert [run.actions["update"] for run in recent] == [100, 110]
    triggers = Triggers(volume={"update": VolumeLimit(above_median_percent=300, runs=2)})
    current = RunStatistics()
    current.actions["update"] = 421
    trip = check_run(triggers, current, recent_runs(ledger, "lead-sync", 2))
    assert trip is not None and trip.evidence["median"] == 105


def test_a_canary_run_recorded_to_its_end_is_re_enable_evidence(ledger):
    pause_lane(ledger, "lead-sync", "bad owners", "alice")
    assert canary_run(ledger, "lead-sync") is None
    allow_canary(ledger, "lead-sync", "bob", "canary-1", 50)
    statistics = RunStatistics()
    statistics.actions["update"] = 50
    record_run(ledger, "lead-sync", "canary-1", statistics, completed=True)
    canary = canary_run(ledger, "lead-sync")
    assert (canary.batch, canary.actions, canary.completed, canary.tripped) == (
        "canary-1",
        50,
        True,
        False,
    )
    evidence = proof(
        reconciliations={"crm/contacts": Reconciliation("crm/contacts", 0, 10, canary.at)},
        canary=canary,
    )
    assert enable_lane(
        ledger, "lead-sync", "bob", "proved", rule=RULE, evidence=evidence
    ).check.holds


def test_the_gate_reads_each_workflow_of_a_chunk_once(ledger, monkeypatch):
    pause_lane(ledger, "billing", "invoices doubled", "alice")
    reads = []
    select_events = ledger.recorder.select_events

    def counted(originator_id, **kwargs):
        reads.append(originator_id)
        return select_events(originator_id, **kwargs)

    monkeypatch.setattr(ledger.recorder, "select_events", counted)
    ensure_open(ledger, ["lead-sync", "lead-sync", None, "crm-import"])
    assert sorted(reads) == sorted([lane_id("lead-sync"), lane_id("crm-import")])
    with pytest.raises(LanePaused):
        ensure_open(ledger, ["billing"])
    assert reads[-1] == lane_id("billing") and len(reads) == 3


def test_a_lane_view_prints_as_plain_json_with_typed_evidence(ledger):
    import orjson

    at = datetime(2026, 11, 1, tzinfo=UTC)
    trip = Trip("source_age", "too old", {"source": "hr/people/8", "at": at})
    trip_lane(ledger, "lead-sync", trip, batch="run-3")
    enable_lane(ledger, "lead-sync", "bob", "fine", rule=RULE, evidence=proof())
    shown = orjson.loads(orjson.dumps(lane(ledger, "lead-sync").to_json()))
    assert shown["state"] == "active" and shown["pause"] is None
    assert shown["last_trip"]["evidence"]["at"] == {"$datetime": at.isoformat()}
    assert shown["last_trip"]["trigger"] == "source_age"
    assert shown["last_enable"]["proved"][-1] == "approved by carol"
