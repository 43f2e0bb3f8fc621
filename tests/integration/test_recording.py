"""Recording through a real store (SQLite file and PostgreSQL): exact, atomic, exactly once."""

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest

from ledger import (
    ABSENT,
    Address,
    BatchClosed,
    BeforeMismatch,
    Change,
    FingerprintReused,
    InvalidChange,
    NotFound,
    open_ledger,
)

ANN = Address.parse("crm/contacts/1")
BOB = Address.parse("crm/contacts/2")


def create(address, **fields):
    return Change(address, "create", values=fields)


def update(address, **fields):
    return Change(address, "update", values=fields)


def event_count(ledger):
    return ledger.recorder.max_notification_id() or 0


def test_an_action_carries_everything_needed_to_explain_and_undo_it(ledger):
    ledger.record(create(ANN, stage="lead", owner="ann"), batch="b1")
    receipt = ledger.record(
        Change(
            ANN,
            "update",
            values={"stage": "customer"},
            inputs={"score": 91},
            sources=("sheet/leads/17",),
            effective_at=datetime(2026, 11, 24, 9, 12, tzinfo=UTC),
        ),
        batch="run-7",
        workflow="lead-sync",
        workflow_version="3",
        actor="zapier",
        trigger="schedule",
    )
    action = receipt.action
    assert not receipt.duplicate
    assert (action.version, action.operation, action.batch) == (2, "update", "run-7")
    assert action.delta == {"stage": ("lead", "customer")}
    assert action.compensation["set"] == {"stage": "lead"}
    assert action.inputs == {"score": 91}
    assert (action.workflow, action.workflow_version) == ("lead-sync", "3")
    assert (action.actor, action.trigger, action.sources) == (
        "zapier",
        "schedule",
        ("sheet/leads/17",),
    )
    assert action.effective_at == datetime(2026, 11, 24, 9, 12, tzinfo=UTC)
    assert action.fingerprint.startswith("sha256:")
    assert ledger.history(ANN)[-1] == action


def test_the_same_fingerprint_recorded_twice_is_one_action(ledger):
    ledger.record(create(ANN, stage="lead"), batch="b1")
    first = ledger.record(update(ANN, stage="customer"), batch="b1")
    events = event_count(ledger)
    again = ledger.record(update(ANN, stage="customer"), batch="b1")
    assert again.duplicate
    assert again.action == first.action
    assert event_count(ledger) == events
    assert [a.version for a in ledger.history(ANN)] == [1, 2]


def test_an_explicit_fingerprint_is_the_idempotency_key(ledger):
    ledger.record(create(ANN, n=0), batch="b1")
    first = ledger.record(Change(ANN, "update", values={"n": 1}, fingerprint="k"), batch="b1")
    again = ledger.record(Change(ANN, "update", values={"n": 1}, fingerprint="k"), batch="b2")
    assert again.duplicate and again.action.position == first.action.position


def test_values_come_back_exactly_as_recorded(ledger, db_url):
    fields = {
        "int": 7,
        "float": 7.0,
        "bool": True,
        "null": None,
        "big": 2**80,
        "money": Decimal("19.990"),
        "day": date(2026, 11, 24),
        "at": datetime(2026, 11, 24, 9, 12, 0, 123456, tzinfo=timezone(timedelta(hours=1))),
        "id": UUID("6f1c1d1e-8f55-4f5b-9a51-0b7e4c3d2a10"),
        "nested": {"_type_": "uuid_hex", "_data_": "not really", "list": [1, "two", None]},
    }
    ledger.record(create(ANN, **fields), batch="b1")
    state = open_ledger(db_url).state(ANN)
    assert state.fields == fields
    for name, value in fields.items():
        assert type(state.fields[name]) is type(value), name
    assert "missing" not in state.fields


def test_null_and_absent_stay_different(ledger):
    ledger.record(create(ANN, phone=None), batch="b1")
    receipt = ledger.record(update(ANN, email="a@example.com"), batch="b1")
    assert receipt.action.delta == {"email": (ABSENT, "a@example.com")}
    assert ledger.state(ANN).fields == {"phone": None, "email": "a@example.com"}


def test_a_contradicting_before_value_records_nothing(ledger):
    ledger.record(create(ANN, stage="lead"), batch="b1")
    events = event_count(ledger)
    with pytest.raises(BeforeMismatch):
        ledger.record(Change(ANN, "update", values={"stage": "x"}, before={"stage": "mql"}))
    assert event_count(ledger) == events


def test_a_batch_of_changes_is_recorded_all_or_nothing(ledger):
    ledger.record(create(ANN, stage="lead"), batch="b0")
    events = event_count(ledger)
    changes = [update(ANN, stage="customer"), create(BOB, stage="lead"), create(ANN, stage="x")]
    with pytest.raises(InvalidChange, match="line 3: crm/contacts/1 already exists"):
        ledger.record_all(changes, line_numbers=[1, 2, 3], batch="b1")
    assert event_count(ledger) == events
    with pytest.raises(NotFound):
        ledger.history(BOB)


def test_several_changes_to_one_entity_in_one_batch_chain_their_versions(ledger):
    receipts = ledger.record_all(
        [create(ANN, n=1), update(ANN, n=2), update(ANN, n=3)], batch="b1", close_batch=True
    )
    assert [r.action.version for r in receipts] == [1, 2, 3]
    assert [r.action.delta["n"] for r in receipts] == [(ABSENT, 1), (1, 2), (2, 3)]
    assert ledger.batch_view("b1").status == "closed"
    assert ledger.batch_view("b1").actions == 3


def test_a_closed_batch_takes_no_more_actions_but_still_answers_retries(ledger):
    ledger.record_all([create(ANN, n=1)], batch="b1", close_batch=True)
    assert ledger.record(create(ANN, n=1), batch="b1").duplicate
    with pytest.raises(BatchClosed, match="batch 'b1' is closed"):
        ledger.record(update(ANN, n=2), batch="b1")


def test_delete_then_recreate(ledger):
    ledger.record(create(ANN, n=1), batch="b1")
    deleted = ledger.record(Change(ANN, "delete"), batch="b1")
    assert deleted.action.before == {"n": 1}
    assert not ledger.state(ANN).exists
    with pytest.raises(InvalidChange, match="was deleted"):
        ledger.record(update(ANN, n=2), batch="b1")
    ledger.record(create(ANN, n=3), batch="b1")
    assert ledger.state(ANN).fields == {"n": 3}


def test_batches_are_listed_with_their_counts(ledger):
    ledger.record_all([create(ANN, n=1), create(BOB, n=1)], batch="b1", workflow="lead-sync")
    ledger.record(update(ANN, n=2), batch="b2")
    ledger.close_batch("b1")
    listed = {b.name: b for b in ledger.batches()}
    assert (listed["b1"].status, listed["b1"].actions, listed["b1"].workflow) == (
        "closed",
        2,
        "lead-sync",
    )
    assert (listed["b2"].status, listed["b2"].actions) == ("open", 1)


def test_a_large_batch_is_recorded_in_one_transaction(ledger):
    """20,000 actions in one save: on PostgreSQL one statement that size once hung forever."""
    import signal

    def too_slow(*_):
        raise TimeoutError("recording 20,000 actions did not finish in 120 s")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(120)
    try:
        changes = [create(Address("crm", "contacts", f"{i:05d}"), n=i) for i in range(20_000)]
        receipts = ledger.record_all(changes, batch="big")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    positions = [r.action.position for r in receipts]
    assert positions == sorted(positions) and len(set(positions)) == 20_000
    assert ledger.batch_view("big").actions == 20_000
    assert ledger.state(Address("crm", "contacts", "19999")).fields == {"n": 19_999}


def test_a_batch_spanning_several_chunks_is_still_all_or_nothing(ledger, monkeypatch):
    """On SQLite a batch is loaded, checked and inserted a chunk at a time, in one held
    transaction: a refusal in a later chunk takes back the chunks already inserted."""
    monkeypatch.setattr("ledger.recording.CHUNK", 2)
    ledger.record(create(ANN, stage="lead"), batch="b0")
    events = event_count(ledger)
    changes = [
        *(create(Address("crm", "contacts", f"c{i}"), n=i) for i in range(5)),
        create(ANN, stage="x"),  # the sixth line, in the third chunk: ANN exists
    ]
    with pytest.raises(InvalidChange, match="line 6: crm/contacts/1 already exists"):
        ledger.record_all(changes, line_numbers=list(range(1, 7)), batch="b1")
    assert event_count(ledger) == events
    with pytest.raises(NotFound):
        ledger.history(Address("crm", "contacts", "c0"))


def test_changes_spanning_chunks_chain_versions_and_answer_retries_once(ledger, monkeypatch):
    """A record changed again in a later chunk is read back with the earlier chunk's action;
    a fingerprint repeated in a later chunk is that action's duplicate, not a second one."""
    monkeypatch.setattr("ledger.recording.CHUNK", 2)
    changes = [
        create(ANN, n=1),
        Change(BOB, "create", values={"n": 1}, fingerprint="F"),
        update(ANN, n=2),
        Change(BOB, "create", values={"n": 1}, fingerprint="F"),
        update(ANN, n=3),
    ]
    receipts = ledger.record_all(changes, batch="b1", close_batch=True)
    assert [r.duplicate for r in receipts] == [False, False, False, True, False]
    assert receipts[3].action == receipts[1].action
    assert [r.action.version for r in receipts] == [1, 1, 2, 1, 3]
    assert [a.delta["n"] for a in ledger.history(ANN)] == [(ABSENT, 1), (1, 2), (2, 3)]
    assert ledger.batch_view("b1").actions == 4
    assert ledger.batch_view("b1").status == "closed"


def test_record_stream_counts_what_it_recorded_and_what_was_recorded_before(ledger):
    ledger.record(create(ANN, n=1), batch="b1")
    counted = ledger.record_stream([create(ANN, n=1), create(BOB, n=2)], batch="b1")
    assert (counted.recorded, counted.already_recorded) == (1, 1)
    assert ledger.state(BOB).fields == {"n": 2}


def test_a_fingerprint_reused_for_a_different_change_is_refused_naming_both(ledger):
    ledger.record(create(ANN, n=0), batch="b1")
    ledger.record(Change(ANN, "update", values={"n": 1}, fingerprint="k"), batch="b1")
    events = event_count(ledger)
    other = Address.parse("crm/contacts/other")
    ledger.record(create(other, n=0), batch="b1")
    events = event_count(ledger)
    for reused, differs in [
        (Change(ANN, "update", values={"n": 2}, fingerprint="k"), "values"),
        (Change(other, "update", values={"n": 1}, fingerprint="k"), "record"),
        (Change(ANN, "delete", fingerprint="k"), "operation"),
    ]:
        with pytest.raises(FingerprintReused) as refused:
            ledger.record(reused, batch="b1")
        assert "fingerprint 'k' already names the update of crm/contacts/1" in str(refused.value)
        assert f"differs in its {differs}" in str(refused.value)
    assert event_count(ledger) == events
    assert ledger.state(ANN).fields == {"n": 1}


def test_one_import_reusing_a_fingerprint_for_two_changes_records_neither(ledger):
    ledger.record(create(ANN, n=0), batch="b1")
    with pytest.raises(FingerprintReused):
        ledger.record_all(
            [
                Change(ANN, "update", values={"n": 1}, fingerprint="same"),
                Change(ANN, "update", values={"n": 2}, fingerprint="same"),
            ],
            batch="b2",
        )
    assert ledger.state(ANN).fields == {"n": 0}


def test_a_retried_record_without_a_batch_records_nothing_twice(ledger):
    ledger.record(create(ANN, n=0), batch="b1")
    first = ledger.record(update(ANN, n=1))
    again = ledger.record(update(ANN, n=1))
    assert again.duplicate and again.action.position == first.action.position
    ledger.record(update(ANN, n=2), batch="b2")
    later = ledger.record(update(ANN, n=1))  # the same change made again, later: a new action
    assert not later.duplicate
    assert [a.after for a in ledger.history(ANN)] == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 1}]
