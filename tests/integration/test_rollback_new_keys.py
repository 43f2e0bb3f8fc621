"""Re-creating deleted records through a real HTTP API that assigns its own ids on POST:
the records come back under new keys, the ledger maps old to new, and history, point-in-time
reads, reconciliation, later rollbacks and a second run of the same rollback all follow it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from crm_server import CrmServer

from adapters.http import CollectionRoute, HttpAdapter
from ledger import (
    Address,
    Change,
    Ledger,
    Point,
    RollbackScope,
    apply_rollback,
    compare_with_target,
    plan_rollback,
)
from ledger.cli import main
from ledger.runs import Run, Target, recover

C = "contacts"
SEED = {
    "1": {"name": "Ada", "stage": "customer"},
    "2": {"name": "Bo", "stage": "lead"},
    "3": {"name": "Cy", "stage": "lead"},
    "4": {"name": "Di", "stage": "customer"},
}


@pytest.fixture
def crm(crm_server: Callable[..., CrmServer]) -> CrmServer:
    server = crm_server(assign_ids=True)
    server.seed(C, SEED)
    return server


@pytest.fixture
def adapter(crm: CrmServer) -> Iterator[HttpAdapter]:
    route = CollectionRoute("/contacts", assigns_ids=True)
    http = HttpAdapter("crm", crm.url, {C: route}, retry_wait_initial=0.001, retry_wait_max=0.01)
    yield http
    http.close()


def delete_three(ledger: Ledger, adapter: HttpAdapter) -> None:
    """The bad batch: a cleanup that deleted three contacts it should not have."""
    ledger.checkpoint("before-cleanup")
    with Run(ledger, "cleanup", workflow="dedupe") as run:
        run.apply(
            Target(adapter, C),
            [Change(Address("crm", C, key), "delete") for key in ("1", "2", "3")],
        )


def unmatched(ledger: Ledger, adapter: HttpAdapter) -> list[str]:
    """Keys where the CRM and the ledger's projection differ ("4" was never touched, so the
    ledger does not know it)."""
    return [drift.key for drift in compare_with_target(ledger, adapter, C)]


def roll_back(ledger: Ledger, adapter: HttpAdapter, *batches: str) -> Any:
    chosen = plan_rollback(ledger, RollbackScope(batches=batches), {"crm": adapter})
    return chosen, apply_rollback(ledger, chosen, {"crm": adapter})


def test_deleted_records_come_back_under_new_keys_and_the_ledger_maps_them(
    ledger: Ledger, adapter: HttpAdapter, crm: CrmServer
) -> None:
    delete_three(ledger, adapter)
    chosen = plan_rollback(ledger, RollbackScope(batches=("cleanup",)), {"crm": adapter})
    assert [c.kind for c in chosen.compensations] == ["re-create (new key)"] * 3
    assert "come back under a key their system assigns" in chosen.runbook()

    report = apply_rollback(ledger, chosen, {"crm": adapter})

    assert report.counts == {"re-created": 3}
    assert report.mismatches == []
    new_keys = {o["entity"]: o["as"] for o in report.outcomes}
    assert set(new_keys) == {"crm/contacts/1", "crm/contacts/2", "crm/contacts/3"}
    records = crm.records(C)
    assert set(records) == {"4"} | {new.rsplit("/", 1)[1] for new in new_keys.values()}
    for old, new in new_keys.items():
        assert records[new.rsplit("/", 1)[1]] == SEED[old.rsplit("/", 1)[1]]

    # Point in time follows the record to its new key; before the batch it is at its old one.
    now = ledger.state(Address.parse("crm/contacts/2"))
    assert (now.entity, now.exists, now.fields) == (new_keys["crm/contacts/2"], True, SEED["2"])
    assert now.moved_from == ("crm/contacts/2",)
    before = ledger.state(Address.parse("crm/contacts/2"), Point.parse("before-cleanup"))
    assert before.entity == "crm/contacts/2" and before.moved_from == ()
    unfollowed = ledger.state(Address.parse("crm/contacts/2"), follow=False)
    assert (unfollowed.exists, unfollowed.moved_to) == (False, new_keys["crm/contacts/2"])

    # History of the old key ends with the move, then continues at the new key.
    history = ledger.history(Address.parse("crm/contacts/2"))
    assert [(a.entity, a.operation) for a in history] == [
        ("crm/contacts/2", "track"),
        ("crm/contacts/2", "delete"),
        ("crm/contacts/2", "move"),
        (new_keys["crm/contacts/2"], "create"),
    ]
    assert history[-1].requested == "crm/contacts/2"

    # The ledger's projection and the CRM agree on every record the ledger has seen.
    assert unmatched(ledger, adapter) == ["4"]


def test_a_second_run_of_the_same_rollback_changes_nothing(
    ledger: Ledger, adapter: HttpAdapter, crm: CrmServer
) -> None:
    delete_three(ledger, adapter)
    saved, _ = roll_back(ledger, adapter, "cleanup")
    posts = crm.count("POST")
    records = crm.records(C)

    resumed = apply_rollback(ledger, saved, {"crm": adapter})  # the same saved plan, applied again
    assert resumed.counts == {"re-created": 3}
    assert all(o["note"].startswith("already applied") for o in resumed.outcomes)
    again, report = roll_back(ledger, adapter, "cleanup")

    assert again.compensations == ()
    assert len(again.already_rolled_back) == 3
    assert report.counts == {}
    assert crm.count("POST") == posts
    assert crm.records(C) == records


def test_a_later_batch_on_the_new_key_rolls_back_there(
    ledger: Ledger, adapter: HttpAdapter, crm: CrmServer
) -> None:
    delete_three(ledger, adapter)
    _, report = roll_back(ledger, adapter, "cleanup")
    new_key = next(o["as"] for o in report.outcomes if o["entity"] == "crm/contacts/1")
    key = new_key.rsplit("/", 1)[1]
    with Run(ledger, "stage-fix") as run:
        run.update(Target(adapter, C), key, {"stage": "churned"})

    _, undone = roll_back(ledger, adapter, "stage-fix")

    assert undone.counts == {"restored": 1}
    assert crm.record(C, key) == SEED["1"]
    assert ledger.state(Address.parse("crm/contacts/1")).fields == SEED["1"]


def test_rolling_back_the_rollback_deletes_the_records_at_their_new_keys(
    ledger: Ledger, adapter: HttpAdapter, crm: CrmServer
) -> None:
    delete_three(ledger, adapter)
    first, _ = roll_back(ledger, adapter, "cleanup")

    _, report = roll_back(ledger, adapter, first.batch)

    assert report.counts == {"deleted": 3}
    assert set(crm.records(C)) == {"4"}
    assert unmatched(ledger, adapter) == ["4"]


def test_a_crash_after_the_post_neither_loses_nor_duplicates_the_record(
    ledger: Ledger, adapter: HttpAdapter, crm: CrmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The POST lands, then the process dies before the ledger settles it. Recovery cannot find
    the record by its old key; the retry carries the same Idempotency-Key (the action's
    fingerprint), so the CRM answers with the record it created instead of a second one."""
    delete_three(ledger, adapter)
    chosen = plan_rollback(ledger, RollbackScope(batches=("cleanup",)), {"crm": adapter})
    real = Ledger.record_all

    def crash(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt("killed after the write")

    monkeypatch.setattr(Ledger, "record_all", crash)
    with pytest.raises(KeyboardInterrupt):
        apply_rollback(ledger, chosen, {"crm": adapter})
    monkeypatch.setattr(Ledger, "record_all", real)
    assert len(crm.records(C)) == 1 + 3  # the POSTs landed; nothing recorded them

    assert [o.status for o in recover(ledger, {"crm": adapter})] == ["not_applied"] * 3
    report = apply_rollback(ledger, chosen, {"crm": adapter})

    assert report.counts == {"re-created": 3}
    assert len(crm.records(C)) == 1 + 3  # the replayed POSTs added no duplicate
    assert unmatched(ledger, adapter) == ["4"]


def test_the_cli_shows_the_new_keys_and_follows_them(
    tmp_path: Any, db_url: str, ledger: Ledger, adapter: HttpAdapter, crm: CrmServer
) -> None:
    config = tmp_path / "ledger.toml"
    config.write_text(
        f'[systems.crm]\ntype = "http"\nbase_url = "{crm.url}"\n'
        'collections.contacts = { path = "/contacts", assigns_ids = true }\n'
    )
    delete_three(ledger, adapter)
    db = db_url

    def ledger_cli(*args: str) -> Any:
        return CliRunner().invoke(main, [*args, "--db", db], catch_exceptions=False)

    planned = json.loads(
        ledger_cli(
            "rollback", "plan", "--batch", "cleanup", "--config", str(config), "--json"
        ).stdout
    )
    assert {c["kind"] for c in planned["compensations"]} == {"re-create (new key)"}
    applied = ledger_cli("rollback", "apply", "--batch", "cleanup", "--config", str(config))
    assert applied.exit_code == 0, applied.output
    assert "(a key the system chose)" in applied.output
    state = ledger_cli("state", "crm/contacts/3")
    assert "crm/contacts/3 moved to a key the system chose; following it" in state.output
    assert "Cy" in state.output
    history = ledger_cli("history", "crm/contacts/3", "--json")
    assert [a["operation"] for a in json.loads(history.stdout)] == [
        "track",
        "delete",
        "move",
        "create",
    ]


def test_records_a_batch_created_under_keys_the_server_chose_are_deleted_not_re_created(
    ledger: Ledger, adapter: HttpAdapter, crm: CrmServer
) -> None:
    """The batch asked for keys the server replaced with its own: the placeholder key holds a
    `move`, the record lives at the server's key. Their scope began with their creation, so
    the rollback deletes them where they live and re-creates nothing (not an empty record at
    the placeholder)."""
    with Run(ledger, "import") as run:
        outcomes = run.apply(
            Target(adapter, C),
            [
                Change(Address("crm", C, f"new-{n}"), "create", values={"name": f"N{n}"})
                for n in range(3)
            ],
        )
        run.update(Target(adapter, C), "2", {"stage": "customer"})
    created = sorted(o.receipt.action.entity for o in outcomes if o.receipt is not None)
    assert len(created) == 3 and not any(e.startswith("crm/contacts/new-") for e in created)
    posts = crm.count("POST")

    chosen = plan_rollback(ledger, RollbackScope(batches=("import",)), {"crm": adapter})

    assert sorted((c.entity, c.kind) for c in chosen.compensations) == [
        *((entity, "delete") for entity in created),
        ("crm/contacts/2", "restore"),
    ]
    report = apply_rollback(ledger, chosen, {"crm": adapter})
    assert report.counts == {"deleted": 3, "restored": 1}
    assert report.mismatches == []
    assert crm.records(C) == SEED
    assert crm.count("POST") == posts  # nothing re-created
    assert not ledger.state(Address("crm", C, "new-0")).exists
    again = plan_rollback(ledger, RollbackScope(batches=("import",)), {"crm": adapter})
    assert again.compensations == () and again.conflicts == ()
