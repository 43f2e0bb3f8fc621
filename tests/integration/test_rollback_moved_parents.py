"""Children follow a parent that came back under a new key. On a REST API that assigns its own
ids, a rollback re-creates a deleted contact as, say, 1000: the deals that pointed at contact 2
(re-created by the same rollback, restored by it, or by a later one) must point at 1000, keep
their id type, and verification must fail any record left pointing at a parent that is gone.
Deleting a parent that other collections reference is announced in the plan first."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from crm_server import CrmServer

from adapters.http import CollectionRoute, HttpAdapter
from ledger import Address, Ledger, RollbackScope, apply_rollback, plan_rollback
from ledger.cli import main
from ledger.runs import Run, Target

CONTACTS = {"1": {"name": "Ada"}, "2": {"name": "Bo"}}
DEALS = {
    "7": {"title": "Renewal", "contactId": 2, "stage": "open"},
    "8": {"title": "Upsell", "contactId": 2, "stage": "open"},
    "9": {"title": "Pilot", "contactId": 1, "stage": "open"},
}


@pytest.fixture
def crm(crm_server: Callable[..., CrmServer]) -> CrmServer:
    server = crm_server(assign_ids=True)
    server.seed("contacts", CONTACTS)
    server.seed("deals", DEALS)
    return server


def routes() -> dict[str, CollectionRoute]:
    return {
        "contacts": CollectionRoute("/contacts", assigns_ids=True),
        "deals": CollectionRoute("/deals", assigns_ids=True, parents={"contactId": "contacts"}),
    }


@pytest.fixture
def adapter(crm: CrmServer) -> Iterator[HttpAdapter]:
    http = HttpAdapter("crm", crm.url, routes(), retry_wait_initial=0.001, retry_wait_max=0.01)
    yield http
    http.close()


def cleanup(ledger: Ledger, adapter: HttpAdapter) -> None:
    """The bad batch: closes deal 8, then deletes deal 7 and contact 2."""
    with Run(ledger, "cleanup") as run:
        run.update(Target(adapter, "deals"), "8", {"stage": "lost"})
        run.delete(Target(adapter, "deals"), "7")
        run.delete(Target(adapter, "contacts"), "2")


def test_re_created_and_restored_children_point_at_the_parents_new_key(
    ledger: Ledger, adapter: HttpAdapter, crm: CrmServer
) -> None:
    cleanup(ledger, adapter)

    chosen = plan_rollback(ledger, RollbackScope(batches=("cleanup",)), {"crm": adapter})
    report = apply_rollback(ledger, chosen, {"crm": adapter})

    outcomes = {o["entity"]: o for o in report.outcomes}
    new_contact = outcomes["crm/contacts/2"]["as"].rsplit("/", 1)[1]
    new_deal = outcomes["crm/deals/7"]["as"].rsplit("/", 1)[1]
    assert report.mismatches == []
    deals = crm.records("deals")
    assert deals[new_deal] == {**DEALS["7"], "contactId": int(new_contact)}
    assert deals["8"] == {**DEALS["8"], "contactId": int(new_contact)}
    assert deals["9"] == DEALS["9"]
    assert crm.records("contacts")[new_contact] == CONTACTS["2"]
    assert outcomes["crm/deals/8"]["parents"] == {"contactId": int(new_contact)}
    # The ledger knows the deal's new parent as the CRM has it, so nothing drifted.
    known = ledger.state(Address("crm", "deals", "8")).fields
    assert known["contactId"] == int(new_contact) and known.items() <= deals["8"].items()


def test_a_later_rollback_follows_a_parent_moved_by_an_earlier_one(
    ledger: Ledger, adapter: HttpAdapter, crm: CrmServer
) -> None:
    """Contact 2 was deleted and brought back as a new key by one rollback; deal 8's stage
    change is undone by another: the restore also points deal 8 at the contact's new key."""
    with Run(ledger, "contacts-cleanup") as run:
        run.delete(Target(adapter, "contacts"), "2")
    with Run(ledger, "deal-sync") as run:
        run.update(Target(adapter, "deals"), "8", {"stage": "won"})
    first = apply_rollback(
        ledger,
        plan_rollback(ledger, RollbackScope(batches=("contacts-cleanup",)), {"crm": adapter}),
        {"crm": adapter},
    )
    new_contact = first.outcomes[0]["as"].rsplit("/", 1)[1]

    second = apply_rollback(
        ledger,
        plan_rollback(ledger, RollbackScope(batches=("deal-sync",)), {"crm": adapter}),
        {"crm": adapter},
    )

    assert second.counts == {"restored": 1} and second.mismatches == []
    assert crm.record("deals", "8") == {**DEALS["8"], "contactId": int(new_contact)}


def test_verification_fails_a_record_left_pointing_at_a_parent_that_is_gone(
    ledger: Ledger, adapter: HttpAdapter, crm: CrmServer
) -> None:
    """Deal 8's restore is verified; contact 2 disappears for good meanwhile (someone deleted
    it in the CRM, as the rollback ran): the deal now points at nothing, and that is no
    "verified"."""
    with Run(ledger, "deal-sync") as run:
        run.update(Target(adapter, "deals"), "8", {"stage": "won"})
    chosen = plan_rollback(ledger, RollbackScope(batches=("deal-sync",)), {"crm": adapter})
    crm.after_get("deals", "8", lambda: crm.remove("contacts", "2"))

    report = apply_rollback(ledger, chosen, {"crm": adapter})

    assert report.counts == {"restored": 1}
    assert report.mismatches == [
        {"entity": "crm/deals/8", "fields": ["contactId"], "missing_parent": "crm/contacts/2"}
    ]


def test_deleting_a_parent_that_others_reference_comes_with_a_caution(
    tmp_path: Path, db_url: str, ledger: Ledger, adapter: HttpAdapter, crm: CrmServer
) -> None:
    """The batch created contact 3; someone then opened a deal for it. Rolling back deletes
    the contact, which the CRM may delete the deal with: the plan says so, in JSON, in the
    runbook, and by its exit code."""
    with Run(ledger, "import") as run:
        run.create(Target(adapter, "contacts"), "3", {"name": "Cy"})
    contact = ledger.history(Address("crm", "contacts", "3"))[-1].entity
    crm.seed("deals", {"10": {"title": "First", "contactId": int(contact.rsplit("/", 1)[1])}})
    config = tmp_path / "ledger.toml"
    config.write_text(
        f'[systems.crm]\ntype = "http"\nbase_url = "{crm.url}"\n'
        'collections.contacts = { path = "/contacts", assigns_ids = true }\n'
        'collections.deals = { path = "/deals", assigns_ids = true, '
        'parents = { contactId = "contacts" } }\n'
    )

    def ledger_cli(*args: str) -> Any:
        return CliRunner().invoke(
            main, [*args, "--db", db_url, "--config", str(config)], catch_exceptions=False
        )

    planned = ledger_cli("rollback", "plan", "--batch", "import", "--json")
    assert planned.exit_code == 2, planned.output
    (caution,) = json.loads(planned.stdout)["cautions"]
    assert caution["entity"] == contact
    assert "deals.contactId" in caution["reason"]
    runbook = ledger_cli("rollback", "plan", "--batch", "import").stdout
    assert "## Before you apply (1)" in runbook and "deals.contactId" in runbook
    assert ledger_cli("rollback", "check", "--batch", "import").exit_code == 0  # not blocked
    assert crm.records("deals")["10"]["contactId"] == int(contact.rsplit("/", 1)[1])
