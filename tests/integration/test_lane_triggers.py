"""Each stop trigger judged as a real run goes, through the SQL adapter on a real SQLite target:
a trip pauses the lane with its evidence and stops the run after the chunk that tripped it, the
target holding exactly the writes made until then; below its threshold the run completes."""

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from adapters.sql import SqlAdapter, SqlCollection
from ledger import Address, Change, LaneConfig, LanePaused, Run, Target, lane_view, open_ledger
from ledger.errors import InvalidChange
from ledger.lane_control import recent_runs
from ledger.triggers import FieldGuard, RateLimit, Triggers, VolumeLimit

WORKFLOW = "lead-sync"
ROWS = 8


@pytest.fixture
def crm(tmp_path):
    """A SQLite CRM of 8 contacts at stage 'sql', amount 100 (never negative), and a ledger."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE contacts (id TEXT PRIMARY KEY, stage TEXT, owner TEXT, "
            "amount INTEGER CHECK (amount >= 0))"
        )
        for i in range(ROWS):
            connection.exec_driver_sql(
                f"INSERT INTO contacts VALUES ('{i:05d}', 'sql', 'ann', 100)"
            )
    adapter = SqlAdapter("crm", url, {"contacts": SqlCollection("contacts")})
    ledger = open_ledger(str(tmp_path / "ledger.db"))
    yield ledger, adapter, engine
    ledger.close()
    adapter.close()


def rows(engine):
    with engine.connect() as connection:
        result = connection.execute(sa.text("SELECT id, stage, owner, amount FROM contacts"))
        return {r[0]: {"stage": r[1], "owner": r[2], "amount": r[3]} for r in result}


def update(i, **values):
    details = {k: values.pop(k) for k in ("expected", "sources") if k in values}
    return Change(Address("crm", "contacts", f"{i:05d}"), "update", values=values, **details)


def run(ledger, adapter, changes, triggers, *, batch="run-1", chunk=2):
    """Run the changes in chunks of ``chunk`` under a lane with ``triggers``; the run and the
    error that stopped it (None: it ran to its end)."""
    lane = LaneConfig(WORKFLOW, triggers=triggers)
    stopped = None
    the_run = Run(ledger, batch, workflow=WORKFLOW, lanes={WORKFLOW: lane})
    try:
        with the_run:
            the_run.apply(Target(adapter, "contacts"), changes, chunk_size=chunk)
    except LanePaused as error:
        stopped = error
    return the_run, stopped


def assert_tripped(ledger, the_run, stopped, trigger, batch="run-1"):
    assert stopped is not None and f"stop trigger {trigger}" in str(stopped)
    assert the_run.lane.trip.trigger == trigger
    view = lane_view(ledger, WORKFLOW)
    assert view.state == "paused"
    assert (view.pause.trigger, view.pause.batch) == (trigger, batch)
    assert view.pause.actor == f"stop trigger {trigger}"
    return view.pause.evidence


def assert_completed(ledger, the_run, stopped):
    assert stopped is None and the_run.lane.trip is None
    assert lane_view(ledger, WORKFLOW).state == "active"


def test_a_failure_rate_above_its_limit_trips_after_the_chunk(crm):
    ledger, adapter, engine = crm
    changes = [update(0, amount=-1), update(1, amount=150), update(2, amount=-1)]
    changes += [update(i, amount=150) for i in range(3, ROWS)]
    the_run, stopped = run(
        ledger, adapter, changes, Triggers(failure_rate=RateLimit(0.25, 4)), chunk=4
    )
    evidence = assert_tripped(ledger, the_run, stopped, "failure_rate")
    assert (evidence["failed"], evidence["attempts"]) == (2, 4)
    amounts = {k: r["amount"] for k, r in rows(engine).items()}
    assert amounts == {"00000": 100, "00001": 150, "00002": 100, "00003": 150} | {
        f"{i:05d}": 100 for i in range(4, ROWS)
    }
    assert ledger.batch_view("run-1").actions == 2  # exactly the writes that landed


def test_a_failure_rate_within_its_limit_lets_the_run_complete(crm):
    ledger, adapter, engine = crm
    changes = [update(0, amount=-1)] + [update(i, amount=150) for i in range(1, ROWS)]
    the_run, stopped = run(
        ledger, adapter, changes, Triggers(failure_rate=RateLimit(0.25, 4)), chunk=4
    )
    assert_completed(ledger, the_run, stopped)
    assert [r["amount"] for r in rows(engine).values()].count(150) == ROWS - 1


def test_a_stale_rate_above_its_limit_trips(crm):
    ledger, adapter, engine = crm
    changes = [update(i, owner="dara", expected={"owner": "zed"}) for i in range(2)]
    changes += [update(i, owner="dara") for i in range(2, ROWS)]
    the_run, stopped = run(ledger, adapter, changes, Triggers(stale_rate=RateLimit(0.5, 2)))
    evidence = assert_tripped(ledger, the_run, stopped, "stale_rate")
    assert (evidence["stale"], evidence["attempts"]) == (2, 2)
    assert all(r["owner"] == "ann" for r in rows(engine).values())  # nothing landed


def test_a_stale_rate_within_its_limit_lets_the_run_complete(crm):
    ledger, adapter, engine = crm
    changes = [update(0, owner="dara", expected={"owner": "zed"})]
    changes += [update(i, owner="dara") for i in range(1, ROWS)]
    the_run, stopped = run(ledger, adapter, changes, Triggers(stale_rate=RateLimit(0.5, 2)))
    assert_completed(ledger, the_run, stopped)
    assert [r["owner"] for r in rows(engine).values()].count("dara") == ROWS - 1


def test_more_updates_than_the_absolute_limit_trip_at_the_chunk_that_passed_it(crm):
    ledger, adapter, engine = crm
    changes = [update(i, owner="dara") for i in range(ROWS)]
    triggers = Triggers(volume={"update": VolumeLimit(more_than=3)})
    the_run, stopped = run(ledger, adapter, changes, triggers)
    evidence = assert_tripped(ledger, the_run, stopped, "updates")
    assert (evidence["count"], evidence["more_than"]) == (4, 3)
    owners = [rows(engine)[f"{i:05d}"]["owner"] for i in range(ROWS)]
    assert owners == ["dara"] * 4 + ["ann"] * 4
    assert ledger.batch_view("run-1").status == "open"


def test_updates_within_the_absolute_limit_complete(crm):
    ledger, adapter, _ = crm
    triggers = Triggers(volume={"update": VolumeLimit(more_than=ROWS)})
    changes = [update(i, owner="dara") for i in range(ROWS)]
    assert_completed(ledger, *run(ledger, adapter, changes, triggers))
    assert ledger.batch_view("run-1").status == "closed"


def past_runs(ledger, adapter, triggers, sizes):
    """Earlier runs of the workflow, each finished and recorded (the relative trigger's past)."""
    for n, size in enumerate(sizes):
        changes = [update(i, owner=f"past-{n}") for i in range(size)]
        assert_completed(ledger, *run(ledger, adapter, changes, triggers, batch=f"past-{n}"))


def test_updates_far_above_the_median_of_recent_runs_trip(crm):
    ledger, adapter, engine = crm
    triggers = Triggers(volume={"update": VolumeLimit(above_median_percent=100, runs=3)})
    past_runs(ledger, adapter, triggers, [2, 1, 2])
    changes = [update(i, owner="dara") for i in range(ROWS)]
    the_run, stopped = run(ledger, adapter, changes, triggers)
    evidence = assert_tripped(ledger, the_run, stopped, "updates_vs_median")
    assert (evidence["count"], evidence["median"], evidence["runs"]) == (6, 2, [2, 1, 2])
    owners = [rows(engine)[f"{i:05d}"]["owner"] for i in range(ROWS)]
    assert owners == ["dara"] * 6 + ["ann"] * 2


def test_updates_near_the_median_of_recent_runs_complete(crm):
    ledger, adapter, _ = crm
    triggers = Triggers(volume={"update": VolumeLimit(above_median_percent=100, runs=3)})
    past_runs(ledger, adapter, triggers, [2, 2, 2])
    changes = [update(i, owner="dara") for i in range(4)]
    assert_completed(ledger, *run(ledger, adapter, changes, triggers))


def test_a_run_ending_with_too_few_actions_pauses_the_lane_for_the_next_run(crm):
    ledger, adapter, engine = crm
    changes = [update(i, owner="dara") for i in range(3)]
    the_run, stopped = run(ledger, adapter, changes, Triggers(too_few=5))
    assert stopped is None and the_run.lane.trip.trigger == "too_few"  # for what comes next
    view = lane_view(ledger, WORKFLOW)
    assert (view.state, view.pause.trigger) == ("paused", "too_few")
    assert view.pause.evidence["actions"] == 3
    assert [r["owner"] for r in rows(engine).values()].count("dara") == 3
    with pytest.raises(LanePaused, match="too_few"):  # the next run is refused at the gate
        Run(ledger, "next", workflow=WORKFLOW).apply(Target(adapter, "contacts"), [update(5, x=1)])
    assert rows(engine)["00005"]["owner"] == "ann"


def test_a_run_with_enough_actions_is_not_too_few(crm):
    ledger, adapter, _ = crm
    changes = [update(i, owner="dara") for i in range(5)]
    assert_completed(ledger, *run(ledger, adapter, changes, Triggers(too_few=5)))


def test_a_resumed_run_finding_its_work_done_is_not_too_few(crm):
    ledger, adapter, _ = crm
    changes = [update(i, owner="dara") for i in range(5)]
    assert_completed(ledger, *run(ledger, adapter, changes, Triggers()))
    assert_completed(ledger, *run(ledger, adapter, changes, Triggers(too_few=5)))


ORDER = FieldGuard(order=("lead", "mql", "sql", "customer"))


def test_a_field_moving_backwards_in_its_order_trips(crm):
    ledger, adapter, engine = crm
    changes = [update(0, stage="customer"), update(1, stage="customer"), update(2, stage="lead")]
    changes += [update(i, stage="customer") for i in range(3, ROWS)]
    the_run, stopped = run(ledger, adapter, changes, Triggers(fields={"stage": ORDER}))
    evidence = assert_tripped(ledger, the_run, stopped, "field_order")
    assert evidence["record"] == "crm/contacts/00002"
    assert (evidence["before"], evidence["after"], evidence["field"]) == ("sql", "lead", "stage")
    stages = [rows(engine)[f"{i:05d}"]["stage"] for i in range(ROWS)]
    assert stages == ["customer", "customer", "lead", "customer"] + ["sql"] * 4


def test_a_field_moving_forwards_completes(crm):
    ledger, adapter, _ = crm
    changes = [update(i, stage="customer") for i in range(ROWS)]
    assert_completed(ledger, *run(ledger, adapter, changes, Triggers(fields={"stage": ORDER})))


def test_a_number_changing_by_more_than_its_percent_trips(crm):
    ledger, adapter, engine = crm
    changes = [update(0, amount=140), update(1, amount=60), update(2, amount=90)]
    changes += [update(3, amount=200)] + [update(i, amount=110) for i in range(4, ROWS)]
    guard = FieldGuard(at_most_percent=50)
    the_run, stopped = run(ledger, adapter, changes, Triggers(fields={"amount": guard}))
    evidence = assert_tripped(ledger, the_run, stopped, "field_change")
    assert (evidence["record"], evidence["before"], evidence["after"]) == (
        "crm/contacts/00003",
        100,
        200,
    )
    amounts = [rows(engine)[f"{i:05d}"]["amount"] for i in range(ROWS)]
    assert amounts == [140, 60, 90, 200] + [100] * 4


def test_a_number_changing_within_its_percent_completes(crm):
    ledger, adapter, _ = crm
    changes = [update(i, amount=150) for i in range(ROWS)]
    guard = FieldGuard(at_most_percent=50)
    assert_completed(ledger, *run(ledger, adapter, changes, Triggers(fields={"amount": guard})))


def at(age):
    return (datetime.now(UTC) - age).isoformat()


def test_a_change_drafted_from_an_old_source_record_trips(crm):
    ledger, adapter, engine = crm
    fresh, old = at(timedelta(minutes=5)), at(timedelta(hours=30))
    changes = [update(i, owner="dara", sources=(f"sheet/leads/{i}@{fresh}",)) for i in range(2)]
    changes += [update(2, owner="dara", sources=(f"sheet/leads/2@{old}", "sheet/notes/bob@x.io"))]
    changes += [update(i, owner="dara") for i in range(3, ROWS)]
    triggers = Triggers(source_age=timedelta(hours=24))
    the_run, stopped = run(ledger, adapter, changes, triggers)
    evidence = assert_tripped(ledger, the_run, stopped, "source_age")
    assert evidence["source"] == "sheet/leads/2"
    assert evidence["at"] == datetime.fromisoformat(old)
    owners = [rows(engine)[f"{i:05d}"]["owner"] for i in range(ROWS)]
    assert owners == ["dara"] * 4 + ["ann"] * 4


def test_changes_drafted_from_fresh_sources_complete(crm):
    ledger, adapter, _ = crm
    fresh = at(timedelta(hours=1))
    changes = [update(i, owner="dara", sources=(f"sheet/leads/{i}@{fresh}",)) for i in range(ROWS)]
    triggers = Triggers(source_age=timedelta(hours=24))
    assert_completed(ledger, *run(ledger, adapter, changes, triggers))


def test_a_malformed_source_time_is_refused_naming_the_source():
    with pytest.raises(InvalidChange, match="sheet/leads/1@2026-13-01"):
        update(1, owner="x", sources=("sheet/leads/1@2026-13-01T00:00:00Z",))


def test_a_completed_run_is_recorded_as_the_past_of_the_next(crm):
    ledger, adapter, _ = crm
    changes = [update(i, owner="dara") for i in range(3)]
    assert_completed(ledger, *run(ledger, adapter, changes, Triggers()))
    (past,) = recent_runs(ledger, WORKFLOW, 5)
    assert past.actions == {"update": 3}
