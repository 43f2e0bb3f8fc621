"""The ledger's own links (what a rollback compensates, what a replay redoes, where a move went,
which key a create asked for) are typed fields of its events, set by the ledger only: an
automation's input of the same name is just an input. Events stored before the links became
fields (version 1, the links inside ``inputs``) are read as if written today."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from crm_server import CrmServer

from adapters.http import CollectionRoute, HttpAdapter
from adapters.memory import MemoryAdapter
from ledger import (
    Address,
    Change,
    Ledger,
    RollbackScope,
    apply_rollback,
    open_ledger,
    plan_rollback,
)
from ledger.runs import Run, Target
from ledger.transcoder import OrjsonTranscoder

LINKS = ("compensates", "replays", "moved_to", "requested")


@pytest.fixture
def crm() -> MemoryAdapter:
    return MemoryAdapter("crm", {"contacts": {"1": {"stage": "lead"}, "2": {"stage": "lead"}}})


def contact(key: str) -> Address:
    return Address("crm", "contacts", key)


def test_an_input_named_compensates_does_not_hide_a_later_edit_from_a_rollback(
    ledger: Ledger, crm: MemoryAdapter
) -> None:
    """An automation whose inputs happen to name the batch's own action as `compensates` (and
    a `rollback` id) is someone else's later edit, not the rollback: the record is a conflict,
    not "already rolled back", and keeps the automation's value."""
    with Run(ledger, "sync") as run:
        run.update(Target(crm, "contacts"), "1", {"stage": "sql"})
    synced = ledger.history(contact("1"))[-1].fingerprint
    look_alike = {"compensates": [synced], "replays": [synced], "rollback": "x"}
    with Run(ledger, "rollback-x") as run:
        run.update(Target(crm, "contacts"), "1", {"stage": "won"}, inputs=look_alike)

    chosen = plan_rollback(ledger, RollbackScope(batches=("sync",)), {"crm": crm})

    assert chosen.already_rolled_back == ()
    assert [(c.entity, c.reason) for c in chosen.conflicts] == [("crm/contacts/1", "later action")]
    apply_rollback(ledger, chosen, {"crm": crm})
    assert crm.read("contacts", ["1"])["1"] == {"stage": "won"}
    edit = ledger.history(contact("1"))[-1]
    assert edit.inputs == look_alike and edit.compensates == () and edit.replays == ()


def test_inputs_named_like_links_are_recorded_exactly_and_change_no_move(
    ledger: Ledger,
) -> None:
    """A create on a server that assigns ids, with inputs named `moved_to` and `requested`:
    the inputs are kept as given, and the move follows the key the server chose."""
    inputs = {"moved_to": "crm/contacts/77", "requested": "crm/contacts/78", "score": 1}
    with CrmServer(assign_ids=True) as server:
        adapter = HttpAdapter(
            "crm", server.url, {"contacts": CollectionRoute("/contacts", assigns_ids=True)}
        )
        with Run(ledger, "import") as run:
            outcome = run.create(
                Target(adapter, "contacts"), "new-1", {"name": "Ada"}, inputs=inputs
            )
        adapter.close()
    assigned = outcome.receipt.action.entity if outcome.receipt else None
    assert assigned is not None and assigned != "crm/contacts/77"

    move, created = ledger.history(contact("new-1"))
    assert (move.operation, move.moved_to, move.inputs) == ("move", assigned, inputs)
    assert (created.entity, created.requested, created.inputs) == (
        assigned,
        "crm/contacts/new-1",
        inputs,
    )
    assert ledger.state(contact("new-1")).entity == assigned
    with pytest.raises(Exception, match="no recorded actions"):
        ledger.history(contact("77"))


def test_an_input_named_moved_to_is_recorded_as_given_and_moves_nothing(ledger: Ledger) -> None:
    change = Change.from_json(
        '{"entity": "crm/contacts/5", "op": "create", "set": {"a": 1},'
        ' "inputs": {"moved_to": "crm/contacts/6", "compensates": ["sha256:x"]}}'
    )
    receipt = ledger.record(change)
    assert receipt.action.inputs == {"moved_to": "crm/contacts/6", "compensates": ["sha256:x"]}
    assert receipt.action.to_json().keys().isdisjoint(LINKS)
    assert ledger.state(contact("5")).entity == "crm/contacts/5"


# Events stored by version 1 ----------------------------------------------------------------


def _as_version_1(ledger: Ledger, entity: Address) -> int:
    """Rewrite a record's stored events the way version 1 stored them: no class version, the
    links inside ``inputs`` (a rollback's also naming its plan). Returns how many changed."""
    codec = OrjsonTranscoder()
    recorder: Any = ledger.recorder
    table = recorder.events_table_name
    sqlite = type(recorder).__module__ == "ledger.store.sqlite"
    mark = "?" if sqlite else "%s"
    db_id = entity.entity_id.hex if sqlite else entity.entity_id
    rows = recorder._rows(
        f"SELECT originator_version, state FROM {recorder._qualified(table)} "
        f"WHERE originator_id = {mark}",
        [db_id],
    )
    rewritten = 0
    with recorder.datastore.transaction(commit=True) as cursor:
        for version, state in rows:
            event = codec.decode(bytes(state))
            assert event.pop("class_version") == 2
            links = {name: event.pop(name) for name in LINKS}
            inputs = dict(event["inputs"])
            for verb in ("rollback", "replay"):
                if event["batch"].startswith(f"{verb}-"):
                    inputs[verb] = event["batch"].removeprefix(f"{verb}-")
            inputs.update((name, value) for name, value in links.items() if value)
            event["inputs"] = inputs
            cursor.execute(
                f"UPDATE {recorder._qualified(table)} SET state = {mark} "
                f"WHERE originator_id = {mark} AND originator_version = {mark}",
                [codec.encode(event), db_id, version],
            )
            rewritten += bool(inputs)
    return rewritten


@pytest.fixture
def server() -> Iterator[CrmServer]:
    with CrmServer(assign_ids=True) as crm_server:
        crm_server.seed("contacts", {"1": {"name": "Ada"}, "2": {"name": "Bo"}})
        yield crm_server


def test_version_1_events_read_with_their_links_as_fields(db_url: str, server: CrmServer) -> None:
    """A rollback and a move recorded by version 1: history shows the links as fields and the
    inputs without them; planning the rollback again finds it done; state follows the move."""
    adapter = HttpAdapter(
        "crm", server.url, {"contacts": CollectionRoute("/contacts", assigns_ids=True)}
    )
    ledger = open_ledger(db_url)
    with Run(ledger, "cleanup") as run:
        run.delete(Target(adapter, "contacts"), "1")
        run.update(Target(adapter, "contacts"), "2", {"name": "Bo (checked)"})
    scope = RollbackScope(batches=("cleanup",))
    report = apply_rollback(
        ledger, plan_rollback(ledger, scope, {"crm": adapter}), {"crm": adapter}
    )
    new_key = Address.parse(next(o["as"] for o in report.outcomes if "as" in o))
    assert sum(_as_version_1(ledger, a) for a in (contact("1"), contact("2"), new_key)) == 3
    ledger.close()

    reopened = open_ledger(db_url)
    _, delete, move, created = reopened.history(contact("1"))  # first, the record seen whole
    assert (move.operation, move.moved_to, move.inputs) == ("move", str(new_key), {})
    assert move.compensates == (delete.fingerprint,)
    assert (created.requested, created.inputs) == ("crm/contacts/1", {})
    restored = reopened.history(contact("2"))[-1]
    assert restored.inputs == {} and len(restored.compensates) == 1
    assert reopened.state(contact("1")).entity == str(new_key)
    again = plan_rollback(reopened, scope, {"crm": adapter})
    assert again.compensations == () and again.conflicts == ()
    assert sorted(again.already_rolled_back) == ["crm/contacts/1", "crm/contacts/2"]
    reopened.close()
    adapter.close()
