"""A change is checked field by field, and resolved against what the ledger knows."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ledger.changes import Change, resolve
from ledger.domain import Address, Entity
from ledger.errors import BeforeMismatch, InvalidChange

CONTACT = Address.parse("crm/contacts/42")


def known(fields):
    """An entity the ledger has seen created with these fields."""
    change = Change(CONTACT, "create", values=fields)
    return Entity.first(CONTACT, **_action(change, None))


def _action(change, entity):
    return {
        **resolve(change, entity),
        "inputs": {},
        "workflow": None,
        "workflow_version": None,
        "batch": "b",
        "actor": None,
        "trigger": None,
        "sources": [],
        "effective_at": None,
        "fingerprint": "f",
    }


def test_a_well_formed_change_is_read_with_every_field():
    change = Change.from_json(
        '{"entity": "crm/contacts/42", "op": "update", "set": {"stage": "customer"},'
        ' "before": {"stage": "lead"}, "inputs": {"score": 91}, "workflow": "lead-sync",'
        ' "workflow_version": "3", "batch": "run-7", "actor": "zapier", "trigger": "cron",'
        ' "sources": ["sheet/leads/17"], "effective_at": "2026-11-24T09:12:00Z",'
        ' "fingerprint": "k-1"}'
    )
    assert change.address == CONTACT
    assert change.values == {"stage": "customer"}
    assert change.effective_at == datetime(2026, 11, 24, 9, 12, tzinfo=UTC)
    assert change.sources == ("sheet/leads/17",)


@pytest.mark.parametrize(
    "text, field, message",
    [
        ("not json", "change", "not valid JSON"),
        ('{"op": "update"}', "entity", "missing required field 'entity'"),
        ('{"entity": null, "op": "update"}', "entity", "entity must be text"),  # schemathesis
        ('{"entity": "crm/contacts/1", "op": "upsert"}', "op", "'upsert' is not one of"),
        ('{"entity": "crm/contacts/1", "op": "update", "sett": {}}', "sett", "unknown field"),
        ('{"entity": "crm", "op": "update"}', "entity", "system/collection/key"),
        ('{"entity": "crm/contacts/1", "op": "update"}', "set", "needs 'set' or 'unset'"),
        (
            '{"entity": "crm/contacts/1", "op": "update", "set": {"a": 1}, '
            '"effective_at": "yesterday"}',
            "effective_at",
            "not an ISO 8601 time",
        ),
        (
            '{"entity": "crm/contacts/1", "op": "update", "set": {"a": 1}, '
            '"effective_at": "2026-11-24T09:12:00"}',
            "effective_at",
            "no timezone",
        ),
        ('{"entity": "crm/contacts/1", "op": "update", "set": [1]}', "set", "must be an object"),
    ],
)
def test_a_malformed_change_names_its_line_and_field(text, field, message):
    with pytest.raises(InvalidChange, match=message) as refused:
        Change.from_json(text, line=7)
    assert refused.value.line == 7
    assert refused.value.field == field
    assert str(refused.value).startswith("line 7: ")


def test_omitted_before_values_are_filled_from_the_projection():
    entity = known({"stage": "lead", "owner": "ann"})
    action = resolve(Change(CONTACT, "update", values={"stage": "customer"}), entity)
    assert action["before"] == {"stage": "lead"}
    assert action["after"] == {"stage": "customer"}
    assert action["compensation"] == {
        "operation": "update",
        "set": {"stage": "lead"},
        "unset": [],
        "expect": {"stage": "customer"},
    }


def test_before_values_that_contradict_the_projection_are_refused():
    entity = known({"stage": "lead"})
    change = Change(CONTACT, "update", values={"stage": "customer"}, before={"stage": "mql"})
    with pytest.raises(BeforeMismatch, match=r"'stage' is 'lead' in the ledger.*was 'mql'"):
        resolve(change, entity)


def test_a_before_value_of_another_type_is_a_contradiction():
    entity = known({"score": 1})
    with pytest.raises(BeforeMismatch):
        resolve(Change(CONTACT, "update", values={"score": 2}, before={"score": 1.0}), entity)


def test_null_and_absent_are_different_before_values():
    entity = known({"note": None})
    with pytest.raises(BeforeMismatch, match="'phone' is <absent>"):
        resolve(Change(CONTACT, "update", values={"phone": "1"}, before={"phone": None}), entity)


def test_an_update_of_a_record_new_to_the_ledger_needs_its_before_values():
    with pytest.raises(InvalidChange, match=r"new to the ledger.*'owner'"):
        resolve(
            Change(CONTACT, "update", values={"stage": "x", "owner": "y"}, before={"stage": "a"}),
            None,
        )


def test_delete_restores_every_field_when_compensated():
    entity = known({"stage": "lead", "owner": "ann"})
    action = resolve(Change(CONTACT, "delete"), entity)
    assert action["compensation"] == {
        "operation": "create",
        "set": {"stage": "lead", "owner": "ann"},
    }


def test_creating_an_existing_record_is_refused():
    with pytest.raises(InvalidChange, match="already exists"):
        resolve(Change(CONTACT, "create", values={"a": 1}), known({"a": 0}))


def test_unset_removes_a_field_and_its_compensation_restores_it():
    entity = known({"stage": "lead", "temp": "x"})
    entity.record(**_action(Change(CONTACT, "update", unset=("temp",)), entity))
    assert entity.fields == {"stage": "lead"}
    assert entity.pending_events[-1].compensation["set"] == {"temp": "x"}


def test_fingerprints_of_a_change_are_those_every_ledger_already_holds() -> None:
    """`fingerprints_in` encodes what a change does once for two versions; the fingerprints
    must stay byte for byte those stored by earlier versions (a retry of an action recorded
    before the upgrade would otherwise be recorded twice)."""
    change = Change(
        Address("crm", "contacts", "42"),
        "update",
        values={"stage": "customer", "score": Decimal("1.10")},
        unset=("note",),
        before={"stage": "lead"},
        inputs={"row": 2**70},
        effective_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    pinned = [
        "sha256:9918db415ea7bf080dc6ab5363327ad710b99411ca363af34753b1342f1c2dbc",
        "sha256:cf7753c2f9c5453947a0e72e15ccd996ddc930da333048306aefed5fba9794c7",
    ]
    assert change.fingerprints_in("run-7", 0, 3) == pinned
    assert [change.fingerprint_in("run-7", v) for v in (0, 3)] == pinned
    for batch in ("run-7", 'a "quoted" bätch'):
        assert change.fingerprints_in(batch, 5, 6) == [
            change.content_hash(batch=batch, based_on=5),
            change.content_hash(batch=batch, based_on=6),
        ]
    given = change.evolve(fingerprint="mine")
    assert given.fingerprints_in("run-7", 0, 3) == ["mine", "mine"]
