"""Properties: the state at checkpoint k is the fold of the first k changes, and the state at
time T is the fold of the changes recorded at or before T, on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Address, Change, Point, open_ledger

KEYS = ["1", "2", "3"]
FIELDS = ["stage", "owner", "score"]
START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
field_values = st.none() | st.integers(-5, 5) | st.sampled_from(["lead", "customer", ""])


@st.composite
def histories(draw):
    """Steps that are valid against a simple model: changes, checkpoints and clock ticks."""
    model: dict[str, dict | None] = {}
    steps = []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["change", "change", "change", "checkpoint", "tick"]))
        if kind == "checkpoint":
            steps.append(("checkpoint",))
            continue
        if kind == "tick":
            steps.append(("tick", draw(st.integers(0, 3))))
            continue
        key = draw(st.sampled_from(KEYS))
        fields = model.get(key)
        if fields is None:
            values = draw(st.dictionaries(st.sampled_from(FIELDS), field_values, min_size=1))
            change = ("create", key, values, ())
            model[key] = dict(values)
        elif draw(st.booleans()) or len(fields) == 0:
            values = draw(st.dictionaries(st.sampled_from(FIELDS), field_values, min_size=1))
            removable = [f for f in fields if f not in values]
            unset = (
                tuple(draw(st.lists(st.sampled_from(removable), unique=True))) if removable else ()
            )
            change = ("update", key, values, unset)
            model[key] = {f: v for f, v in {**fields, **values}.items() if f not in unset}
        else:
            change = ("delete", key, {}, ())
            model[key] = None
        steps.append(("change", change))
    return steps


def fold(changes):
    """The reference model: what a collection holds after these changes."""
    model: dict[str, dict] = {}
    for operation, key, values, unset in changes:
        if operation == "delete":
            model.pop(key)
        elif operation == "create":
            model[key] = dict(values)
        else:
            kept = {f: v for f, v in model[key].items() if f not in unset}
            model[key] = {**kept, **values}
    return model


def collection_at(ledger, point):
    return {
        state.entity.rsplit("/", 1)[1]: state.fields
        for state in ledger.collection("crm", "contacts", point)
    }


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_db(request, tmp_path_factory):
    """A function that makes a new empty database on the parametrized backend."""
    if request.param == "sqlite":
        yield lambda: str(tmp_path_factory.mktemp("prop") / "ledger.db")
        return
    server = request.getfixturevalue("postgres_server")
    key = tmp_path_factory.mktemp("key") / "postgres-ledger.key"  # PostgreSQL has no default
    request.getfixturevalue("monkeypatch").setenv("LEDGER_SIGNING_KEY", str(key))
    made = []

    def make():
        made.append(server.create_database())
        return made[-1]

    yield make
    for url in made:
        server.drop_database(url)


def run(db, steps):
    """Record the steps with a frozen, hand-advanced clock; note checkpoints and times."""
    ledger = open_ledger(db)
    applied = []
    checkpoints = []
    moments = []
    now = START
    with freeze_time(now) as clock:
        for step in steps:
            if step[0] == "tick":
                now += timedelta(seconds=step[1])
                clock.move_to(now)
            elif step[0] == "checkpoint":
                checkpoints.append((ledger.checkpoint(f"cp{len(checkpoints)}").name, len(applied)))
            else:
                operation, key, values, unset = step[1]
                change = Change(
                    Address("crm", "contacts", key), operation, values=values, unset=unset
                )
                ledger.record(change, batch="b")
                applied.append(step[1])
                moments.append(now)
    return ledger, applied, checkpoints, moments


PROPERTY = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(steps=histories())
def test_state_at_checkpoint_k_is_the_fold_of_the_first_k_changes(fresh_db, steps):
    ledger, applied, checkpoints, _ = run(fresh_db(), steps)
    for name, count in checkpoints:
        expected = fold(applied[:count])
        assert collection_at(ledger, Point("checkpoint", name)) == expected
        for key in {c[1] for c in applied}:
            state = ledger.state(Address("crm", "contacts", key), Point("checkpoint", name))
            assert (state.fields if state.exists else None) == expected.get(key)
    ledger.close()


@PROPERTY
@given(steps=histories())
def test_state_at_time_t_is_the_fold_of_changes_recorded_at_or_before_t(fresh_db, steps):
    ledger, applied, _, moments = run(fresh_db(), steps)
    probes = sorted(set(moments) | {m - timedelta(milliseconds=1) for m in moments})
    for moment in probes:
        expected = fold([c for c, m in zip(applied, moments, strict=True) if m <= moment])
        assert collection_at(ledger, Point("time", moment)) == expected
        for key in {c[1] for c in applied}:
            state = ledger.state(Address("crm", "contacts", key), Point("time", moment))
            assert (state.fields if state.exists else None) == expected.get(key)
    ledger.close()


def fold_as_effective(changes, effective, moment):
    """The reference for effective time: the changes effective at or before `moment`, folded in
    order of effective time (ties in recorded order); an update to a record that does not
    exist at that point of the order brings it into existence with the fields it names."""
    within = [
        change
        for _, _, change in sorted(
            (when, number, change)
            for number, (change, when) in enumerate(zip(changes, effective, strict=True))
            if when <= moment
        )
    ]
    model: dict[str, dict] = {}
    for operation, key, values, unset in within:
        if operation == "delete":
            model.pop(key, None)
        elif operation == "create":
            model[key] = dict(values)
        else:
            kept = {f: v for f, v in model.get(key, {}).items() if f not in unset}
            model[key] = {**kept, **values}
    return model


@PROPERTY
@given(steps=histories(), days=st.lists(st.integers(0, 4), min_size=25, max_size=25))
def test_state_at_effective_time_folds_the_changes_effective_by_then_in_effective_order(
    fresh_db, steps, days
):
    ledger = open_ledger(fresh_db())
    applied, effective = [], []
    for step in steps:
        if step[0] != "change":
            continue
        operation, key, values, unset = step[1]
        when = START + timedelta(days=days[len(applied)])
        ledger.record(
            Change(
                Address("crm", "contacts", key),
                operation,
                values=values,
                unset=unset,
                effective_at=when,
            ),
            batch="b",
        )
        applied.append(step[1])
        effective.append(when)
    for day in range(-1, 5):
        moment = START + timedelta(days=day, hours=1)
        expected = fold_as_effective(applied, effective, moment)
        assert collection_at(ledger, Point("effective", moment)) == expected
        for key in {c[1] for c in applied}:
            state = ledger.state(Address("crm", "contacts", key), Point("effective", moment))
            assert (state.fields if state.exists else None) == expected.get(key)
    ledger.close()
