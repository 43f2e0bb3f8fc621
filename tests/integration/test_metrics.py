"""Metrics computed from the ledger, on both stores: what the events say, whichever process
wrote them, and cheap on a long log (index aggregates and events selected by topic)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ledger import Address, Change, Ledger, deliver_notices, metrics_text
from ledger.lane_control import enable_lane, pause_lane, record_run, trip_lane
from ledger.lanes import LaneConfig
from ledger.notify.log import LogNotifier
from ledger.reenable import ReenableEvidence, ReenableRule
from ledger.triggers import RunStatistics, Trip


def samples(ledger: Ledger, lanes: dict[str, LaneConfig] | None = None) -> dict[str, float]:
    text = metrics_text(ledger, lanes).decode()
    return {
        sample.name
        + (
            "{" + ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())) + "}"
            if sample.labels
            else ""
        ): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_actions_are_counted_by_workflow_and_operation(ledger: Ledger) -> None:
    for key in range(3):
        ledger.record(
            Change(Address.parse(f"crm/contacts/{key}"), "create", values={"n": key}),
            workflow="lead-sync",
            batch="b1",
        )
    ledger.record(Change(Address.parse("crm/contacts/0"), "update", values={"n": 9}), batch="b2")
    found = samples(ledger)
    assert found["ledger_actions_total{operation=create,workflow=lead-sync}"] == 3
    assert found["ledger_actions_total{operation=update,workflow=}"] == 1


def test_runs_refusals_trips_pauses_and_lane_states(ledger: Ledger) -> None:
    statistics = RunStatistics()
    statistics.add_refusal("stale")
    statistics.add_refusal("stale")
    statistics.add_refusal("failed")
    trip = Trip("stale_rate", "stale above 10%", {"stale": 2})
    record_run(ledger, "lead-sync", "b1", statistics, trip=trip, completed=False)
    record_run(ledger, "lead-sync", "b0", RunStatistics(), completed=True)
    trip_lane(ledger, "lead-sync", trip, batch="b1")
    enable_lane(
        ledger,
        "lead-sync",
        "bo",
        "checked by hand",
        rule=ReenableRule(),
        evidence=ReenableEvidence(),
        override=True,
    )
    pause_lane(ledger, "billing", "month end", "ana")
    lanes = {"quiet": LaneConfig("quiet")}
    found = samples(ledger, lanes)
    assert found["ledger_refusals_total{kind=stale,workflow=lead-sync}"] == 2
    assert found["ledger_refusals_total{kind=failed,workflow=lead-sync}"] == 1
    assert found["ledger_runs_total{outcome=stopped,workflow=lead-sync}"] == 1
    assert found["ledger_runs_total{outcome=completed,workflow=lead-sync}"] == 1
    assert found["ledger_trips_total{trigger=stale_rate,workflow=lead-sync}"] == 1
    assert found["ledger_pauses_total{by=trigger,workflow=lead-sync}"] == 1
    assert found["ledger_pauses_total{by=hand,workflow=billing}"] == 1
    assert found["ledger_enables_total{override=true,workflow=lead-sync}"] == 1
    assert found["ledger_lane_paused{workflow=lead-sync}"] == 0
    assert found["ledger_lane_paused{workflow=billing}"] == 1
    assert found["ledger_lane_paused{workflow=quiet}"] == 0
    assert found["ledger_rollbacks_applied_total"] == 0
    assert "ledger_rollback_success_ratio" not in found


def test_deliveries_are_counted_per_notifier(ledger: Ledger) -> None:
    lanes = {"lead-sync": LaneConfig("lead-sync", notify=("log",))}
    pause_lane(ledger, "lead-sync", "checking", "ana")
    deliver_notices(ledger, {"log": LogNotifier("log")}, lanes)
    found = samples(ledger, lanes)
    assert found["ledger_notices_delivered_total{notifier=log}"] == 1
    assert found["ledger_notifier_failing{notifier=log}"] == 0
    assert 2 <= found["ledger_notifier_position{notifier=log}"] < found["ledger_log_position"]
