"""Any record or collection at any point: version, time, checkpoint, position, effective time."""

from datetime import UTC, datetime

import pytest
from freezegun import freeze_time

from ledger import (
    Address,
    Change,
    CheckpointExists,
    InvalidChange,
    NotFound,
    Point,
    UnknownCheckpoint,
)

ANN = Address.parse("crm/contacts/1")
BOB = Address.parse("crm/contacts/2")
CAT = Address.parse("crm/contacts/3")
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def create(address, **fields):
    return Change(address, "create", values=fields)


def update(address, **fields):
    return Change(address, "update", values=fields)


def at(text):
    return Point.parse(text)


def test_a_record_at_each_version(ledger):
    ledger.record_all(
        [create(ANN, stage="lead"), update(ANN, stage="mql"), update(ANN, stage="sql")]
    )
    assert [ledger.state(ANN, at(f"version:{v}")).fields["stage"] for v in (1, 2, 3)] == [
        "lead",
        "mql",
        "sql",
    ]
    with pytest.raises(NotFound, match="versions 1 to 3, not 4"):
        ledger.state(ANN, at("version:4"))


def test_a_record_at_a_recorded_time(ledger):
    with freeze_time(T0):
        ledger.record(create(ANN, stage="lead"))
    with freeze_time("2026-11-24T10:00:00Z"):
        ledger.record(update(ANN, stage="customer"))
    assert ledger.state(ANN, at("2026-11-24T09:30:00Z")).fields == {"stage": "lead"}
    assert ledger.state(ANN, at("2026-11-24T10:00:00Z")).fields == {"stage": "customer"}
    before_any = ledger.state(ANN, at("2026-11-24T08:00:00Z"))
    assert not before_any.exists and before_any.version == 0


def test_actions_sharing_a_timestamp_all_count_at_that_time(ledger):
    with freeze_time(T0):
        ledger.record(create(ANN, n=1))
        ledger.record(update(ANN, n=2))
        ledger.record(create(BOB, n=1))
    assert ledger.state(ANN, at("time:2026-11-24T09:00:00+00:00")).fields == {"n": 2}
    assert len(list(ledger.collection("crm", "contacts", at("2026-11-24T09:00:00Z")))) == 2


def test_a_record_at_a_checkpoint(ledger):
    ledger.record(create(ANN, stage="lead"))
    checkpoint = ledger.checkpoint("before-sync")
    ledger.record(update(ANN, stage="customer"))
    assert ledger.state(ANN, at("before-sync")).fields == {"stage": "lead"}
    assert ledger.state(ANN, at(f"position:{checkpoint.position}")).fields == {"stage": "lead"}
    assert [c.name for c in ledger.checkpoints()] == ["before-sync"]


def test_checkpoint_names_are_unique_and_unambiguous(ledger):
    ledger.checkpoint("before-sync")
    with pytest.raises(CheckpointExists, match="already names position"):
        ledger.checkpoint("before-sync")
    for bad in ("", "2026-11-24", "time:x", "42"):
        with pytest.raises(InvalidChange):
            ledger.checkpoint(bad)
    with pytest.raises(UnknownCheckpoint, match="no checkpoint named 'nope'"):
        ledger.state(ANN, at("nope"))


def test_a_record_at_an_effective_time_follows_the_source_systems_clock(ledger):
    def at_source(hour, stage):
        effective = datetime(2026, 11, 24, hour, tzinfo=UTC)
        return Change(ANN, "update", values={"stage": stage}, effective_at=effective)

    ledger.record(Change(ANN, "create", values={"stage": "new"}, effective_at=T0))
    ledger.record(at_source(12, "customer"))
    ledger.record(at_source(10, "lead"))  # arrived late: it happened before the one above
    assert ledger.state(ANN, at("effective:2026-11-24T11:00:00Z")).fields == {"stage": "lead"}
    assert ledger.state(ANN, at("effective:2026-11-24T10:30:00Z")).fields == {"stage": "lead"}
    assert ledger.state(ANN, at("effective:2026-11-24T09:30:00Z")).fields == {"stage": "new"}


def test_history_lists_every_action_with_its_position(ledger):
    ledger.record(create(ANN, n=1), batch="b1")
    ledger.record(create(BOB, n=1), batch="b1")
    ledger.record(update(ANN, n=2), batch="b2")
    history = ledger.history(ANN)
    assert [(a.version, a.batch) for a in history] == [(1, "b1"), (2, "b2")]
    assert history[0].position < history[1].position
    with pytest.raises(NotFound, match="crm/contacts/9 has no recorded actions"):
        ledger.history(Address.parse("crm/contacts/9"))


def test_a_collection_at_a_checkpoint_in_key_order(ledger):
    ledger.record_all(
        [create(BOB, n=1), create(ANN, n=1), create(Address.parse("crm/deals/1"), v=1)]
    )
    ledger.checkpoint("cp")
    ledger.record_all([update(ANN, n=2), create(CAT, n=1), Change(BOB, "delete")])
    then = list(ledger.collection("crm", "contacts", at("cp")))
    assert [(s.entity, s.fields) for s in then] == [
        ("crm/contacts/1", {"n": 1}),
        ("crm/contacts/2", {"n": 1}),
    ]
    now = list(ledger.collection("crm", "contacts"))
    assert [(s.entity, s.fields) for s in now] == [
        ("crm/contacts/1", {"n": 2}),
        ("crm/contacts/3", {"n": 1}),
    ]
    with_deleted = list(ledger.collection("crm", "contacts", deleted=True))
    assert [s.exists for s in with_deleted] == [True, False, True]


def test_a_collection_larger_than_a_page_streams_completely(ledger, monkeypatch):
    import ledger.queries as queries

    monkeypatch.setattr(queries, "PAGE_SIZE", 7)
    changes = [create(Address("crm", "contacts", f"{i:03d}"), n=i) for i in range(30)]
    changes += [update(Address("crm", "contacts", f"{i:03d}"), n=-i) for i in range(0, 30, 3)]
    ledger.record_all(changes)
    states = list(ledger.collection("crm", "contacts"))
    assert [s.entity for s in states] == [f"crm/contacts/{i:03d}" for i in range(30)]
    assert [s.fields["n"] for s in states] == [-i if i % 3 == 0 else i for i in range(30)]


def test_diff_of_a_record_between_two_points(ledger):
    ledger.record(create(ANN, stage="lead", owner="ann"))
    ledger.checkpoint("cp")
    ledger.record(Change(ANN, "update", values={"stage": "customer"}, unset=("owner",)))
    difference = ledger.diff(ANN, at("cp"), None)
    assert difference.change == "changed"
    assert {k: (a, repr(b)) for k, (a, b) in difference.fields.items()} == {
        "owner": ("ann", "<absent>"),
        "stage": ("lead", "'customer'"),
    }
    assert ledger.diff(ANN, at("cp"), at("cp")) is None


def test_diff_of_a_collection_lists_added_removed_and_changed(ledger):
    ledger.record_all([create(ANN, n=1), create(BOB, n=1), create(CAT, n=1)])
    ledger.checkpoint("cp")
    ledger.record_all(
        [update(ANN, n=2), Change(BOB, "delete"), create(Address.parse("crm/contacts/4"), n=1)]
    )
    differences = list(ledger.diff_collection("crm", "contacts", at("cp"), None))
    assert [(d.entity, d.change) for d in differences] == [
        ("crm/contacts/1", "changed"),
        ("crm/contacts/2", "removed"),
        ("crm/contacts/4", "added"),
    ]


def test_long_histories_read_from_snapshots_with_the_same_result(ledger):
    changes = [create(ANN, n=0)] + [update(ANN, n=i) for i in range(1, 250)]
    for start in range(0, 250, 50):
        ledger.record_all(changes[start : start + 50], batch="b")
    assert ledger.snapshots is not None
    assert ledger.snapshots.get(ANN.entity_id) != []
    for version in (1, 99, 100, 101, 200, 250):
        assert ledger.state(ANN, at(f"version:{version}")).fields == {"n": version - 1}


def test_a_backdated_correction_recorded_late_folds_where_it_took_effect(ledger):
    from datetime import UTC, datetime

    from ledger import Address, Change, Point

    deal = Address.parse("crm/deals/1")
    ledger.record(
        Change(deal, "create", values={"a": 0}, effective_at=datetime(2025, 1, 1, tzinfo=UTC)),
        batch="b",
    )
    ledger.record(
        Change(deal, "update", values={"a": 1}, effective_at=datetime(2026, 1, 1, tzinfo=UTC)),
        batch="b",
    )
    ledger.record(
        Change(deal, "update", values={"a": 2}, effective_at=datetime(2025, 6, 1, tzinfo=UTC)),
        batch="b",
    )
    at = Point.parse("effective:2026-02-01T00:00:00Z")
    assert ledger.state(deal, at).fields == {"a": 1}
    assert [s.fields for s in ledger.collection("crm", "deals", at)] == [{"a": 1}]
    between = Point.parse("effective:2025-07-01T00:00:00Z")
    assert ledger.state(deal, between).fields == {"a": 2}
    assert ledger.state(deal).fields == {"a": 2}  # now, in recorded order: the latest action


def test_the_same_values_effective_at_another_time_are_recorded_not_taken_for_a_retry(ledger):
    from datetime import UTC, datetime

    from ledger import Address, Change

    deal = Address.parse("crm/deals/2")
    ledger.record(Change(deal, "create", values={"a": 0}), batch="b")
    first = ledger.record(
        Change(deal, "update", values={"a": 1}, effective_at=datetime(2026, 1, 1, tzinfo=UTC)),
        batch="b",
    )
    correction = ledger.record(
        Change(deal, "update", values={"a": 1}, effective_at=datetime(2025, 1, 1, tzinfo=UTC)),
        batch="b",
    )
    assert not correction.duplicate
    assert correction.action.version == first.action.version + 1


def test_changed_since_names_the_records_changed_after_a_position_but_the_excluded(ledger):
    """What a saved plan made at a position must not write over (rollback and reconcile)."""

    def record(key, fingerprint):
        change = Change(
            Address("crm", "contacts", key), "create", values={"n": 1}, fingerprint=fingerprint
        )
        return ledger.record(change).action.position

    position = record("1", "first")
    record("2", "second")
    record("a/b", "third")
    assert ledger.changed_since(position) == {"crm/contacts/2", "crm/contacts/a/b"}
    assert ledger.changed_since(position, excluding={"second"}) == {"crm/contacts/a/b"}
    assert ledger.changed_since(position, system="crm", collection="deals") == set()
    assert ledger.changed_since(0) == {"crm/contacts/1", "crm/contacts/2", "crm/contacts/a/b"}
