"""Stop triggers, each kind tripping and not tripping, judged purely over run statistics."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from ledger.triggers import (
    FieldGuard,
    RateLimit,
    RunStatistics,
    Triggers,
    VolumeLimit,
    check_drift,
    check_rollback_plan,
    check_run,
)

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
STAGES = ("lead", "mql", "sql", "opportunity", "customer")


def run_of(*, creates=0, updates=0, deletes=0, stale=0, failed=0):
    run = RunStatistics()
    for operation, count in (("create", creates), ("update", updates), ("delete", deletes)):
        for n in range(count):
            run.add_action(operation, f"crm/contacts/{n}")
    run.add_refusal("stale", stale)
    run.add_refusal("failed", failed)
    return run


def test_a_failure_rate_above_its_threshold_trips_once_the_minimum_is_reached():
    triggers = Triggers(failure_rate=RateLimit(above=0.05, min_actions=50))
    trip = check_run(triggers, run_of(updates=90, failed=10))
    assert trip is not None and trip.trigger == "failure_rate"
    assert trip.evidence == {"failed": 10, "attempts": 100, "above": 0.05, "min_actions": 50}
    assert "10 of 100 writes failed" in trip.rule


def test_a_failure_rate_at_its_threshold_or_before_the_minimum_does_not_trip():
    triggers = Triggers(failure_rate=RateLimit(above=0.05, min_actions=50))
    assert check_run(triggers, run_of(updates=95, failed=5)) is None
    assert check_run(triggers, run_of(updates=10, failed=10)) is None  # 20 attempts < 50


def test_a_stale_rate_trips_on_stale_refusals_not_on_failures():
    triggers = Triggers(stale_rate=RateLimit(above=0.10, min_actions=50))
    assert check_run(triggers, run_of(updates=80, failed=20)) is None
    trip = check_run(triggers, run_of(updates=80, stale=20))
    assert trip is not None and trip.trigger == "stale_rate" and trip.evidence["stale"] == 20


@given(
    applied=st.integers(0, 200),
    refused=st.integers(0, 200),
    min_actions=st.integers(1, 500),
    above=st.floats(0, 1),
)
def test_a_rate_trigger_never_trips_below_its_minimum_count(applied, refused, min_actions, above):
    triggers = Triggers(failure_rate=RateLimit(above=above, min_actions=min_actions))
    trip = check_run(triggers, run_of(updates=applied, failed=refused))
    if applied + refused < min_actions:
        assert trip is None
    else:
        assert (trip is not None) == (refused / (applied + refused) > above)


def test_more_deletes_than_the_absolute_limit_trips():
    triggers = Triggers(volume={"delete": VolumeLimit(more_than=200)})
    assert check_run(triggers, run_of(deletes=200)) is None
    trip = check_run(triggers, run_of(deletes=201))
    assert trip is not None and trip.trigger == "deletes"
    assert trip.evidence == {"operation": "delete", "count": 201, "more_than": 200}


def test_updates_far_above_the_median_of_recent_runs_trip():
    triggers = Triggers(volume={"update": VolumeLimit(above_median_percent=300, runs=5)})
    recent = [run_of(updates=n) for n in (1000, 90, 100, 110, 95, 105)]  # the oldest is ignored
    assert check_run(triggers, run_of(updates=400), recent) is None  # +300% of 100 is 400
    trip = check_run(triggers, run_of(updates=401), recent)
    assert trip is not None and trip.trigger == "updates_vs_median"
    assert trip.evidence["median"] == 100 and trip.evidence["runs"] == [90, 100, 110, 95, 105]


def test_a_relative_limit_without_history_or_with_a_zero_median_does_not_trip():
    triggers = Triggers(volume={"update": VolumeLimit(above_median_percent=300)})
    assert check_run(triggers, run_of(updates=5000)) is None
    assert check_run(triggers, run_of(updates=5000), [run_of(), run_of()]) is None


def test_too_few_changes_trip_only_once_the_run_has_ended():
    triggers = Triggers(too_few=10)
    stalled = run_of(updates=3)
    assert check_run(triggers, stalled) is None
    trip = check_run(triggers, stalled, ended=True)
    assert trip is not None and trip.trigger == "too_few"
    assert trip.evidence == {"actions": 3, "fewer_than": 10}
    assert check_run(triggers, run_of(updates=10), ended=True) is None


def test_a_field_moving_backwards_in_its_order_trips():
    triggers = Triggers(fields={"lifecycle_stage": FieldGuard(order=STAGES)})
    run = RunStatistics.watching(triggers)
    run.add_action("update", "crm/contacts/1", {"lifecycle_stage": ("lead", "sql")})
    run.add_action("update", "crm/contacts/2", {"lifecycle_stage": ("sql", "sql")})
    run.add_action("update", "crm/contacts/3", {"lifecycle_stage": ("unknown", "lead")})
    assert check_run(triggers, run) is None
    run.add_action("update", "crm/contacts/4", {"lifecycle_stage": ("customer", "mql")})
    trip = check_run(triggers, run)
    assert trip is not None and trip.trigger == "field_order"
    assert trip.evidence["record"] == "crm/contacts/4"
    assert (trip.evidence["before"], trip.evidence["after"]) == ("customer", "mql")


def test_a_field_changing_by_more_than_its_share_trips():
    triggers = Triggers(fields={"amount": FieldGuard(at_most_percent=50)})
    run = RunStatistics.watching(triggers)
    run.add_action("update", "crm/deals/1", {"amount": (Decimal("100.00"), Decimal("150.00"))})
    run.add_action("update", "crm/deals/2", {"amount": (200, 100)})
    run.add_action("update", "crm/deals/3", {"amount": ("n/a", 5)})  # not numbers: not judged
    run.add_action("update", "crm/deals/4", {"owner": (1, 1000)})  # not a watched field
    assert check_run(triggers, run) is None
    run.add_action("update", "crm/deals/5", {"amount": (100, 151)})
    trip = check_run(triggers, run)
    assert trip is not None and trip.trigger == "field_change"
    assert trip.evidence["record"] == "crm/deals/5"


def test_a_field_moving_off_zero_is_an_unbounded_change():
    triggers = Triggers(fields={"amount": FieldGuard(at_most_percent=50)})
    run = RunStatistics.watching(triggers)
    run.add_action("update", "crm/deals/1", {"amount": (0, 0)})
    assert check_run(triggers, run) is None
    run.add_action("update", "crm/deals/2", {"amount": (0, 1)})
    assert check_run(triggers, run) is not None


def test_statistics_keep_only_the_watched_fields():
    run = RunStatistics.watching(Triggers(fields={"amount": FieldGuard(at_most_percent=5)}))
    run.add_action("update", "crm/deals/1", {"amount": (1, 2), "note": ("a", "b")})
    assert set(run.field_changes) == {"amount"}


def test_a_source_record_older_than_the_limit_trips():
    triggers = Triggers(source_age=timedelta(hours=24))
    run = RunStatistics.watching(triggers)
    run.add_action("update", "crm/contacts/1", sources={"hr/people/7": NOW - timedelta(hours=2)})
    assert check_run(triggers, run, now=NOW) is None
    run.add_action("update", "crm/contacts/2", sources={"hr/people/8": NOW - timedelta(days=2)})
    assert check_run(triggers, run) is None  # ages are judged against a given now
    trip = check_run(triggers, run, now=NOW)
    assert trip is not None and trip.trigger == "source_age"
    assert trip.evidence["source"] == "hr/people/8"


def test_a_rollback_plan_with_too_many_conflicts_trips():
    triggers = Triggers(rollback_conflicts=20)
    assert check_rollback_plan(triggers, "abc", 20) is None
    trip = check_rollback_plan(triggers, "abc", 21)
    assert trip is not None and trip.evidence == {"plan": "abc", "conflicts": 21, "more_than": 20}
    assert check_rollback_plan(Triggers(), "abc", 10_000) is None


def test_drift_above_a_share_of_a_collection_trips():
    triggers = Triggers(drift_share=0.02)
    assert check_drift(triggers, "crm/contacts", 2, 100) is None
    assert check_drift(triggers, "crm/contacts", 0, 0) is None
    trip = check_drift(triggers, "crm/contacts", 3, 100)
    assert trip is not None and trip.trigger == "drift_share"
    assert "3 of 100 records of crm/contacts drifted" in trip.rule


def test_no_declared_trigger_never_trips():
    assert check_run(Triggers(), run_of(deletes=10_000, failed=10_000), ended=True, now=NOW) is None
