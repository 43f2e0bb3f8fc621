"""Rollback where the target knows relations: a real foreign key from contacts to accounts, on
SQLite and PostgreSQL. Deletions go child-first and re-creations parent-first whatever the log
order; a record whose parent is gone follows the missing-parent policy; a refusal the plan could
not foresee names the record, the field and the reference."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from crm_server import CrmServer

from adapters.sql import SqlAdapter, SqlCollection
from ledger import Ledger, RollbackScope, apply_rollback, plan_rollback
from ledger.config import open_adapters
from ledger.errors import ConfigurationError
from ledger.runs import Run, Target


@pytest.fixture
def crm(sql_url: str) -> Iterator[tuple[sa.Engine, SqlAdapter]]:
    engine = sa.create_engine(sql_url)
    metadata = sa.MetaData()
    accounts = sa.Table(
        "accounts",
        metadata,
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("name", sa.String),
    )
    contacts = sa.Table(
        "contacts",
        metadata,
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("name", sa.String),
        sa.Column("account_id", sa.String, sa.ForeignKey("accounts.id", name="contact_account")),
    )
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(accounts), [{"id": "a1", "name": "Acme"}, {"id": "a2", "name": "Bolt"}]
        )
        connection.execute(
            sa.insert(contacts),
            [
                {"id": "c1", "name": "Ada", "account_id": "a1"},
                {"id": "c2", "name": "Bo", "account_id": "a2"},
            ],
        )
    adapter = SqlAdapter(
        "crm",
        sql_url,
        {"accounts": SqlCollection("accounts"), "contacts": SqlCollection("contacts")},
    )
    yield engine, adapter
    adapter.close()
    engine.dispose()


def table(engine: sa.Engine, name: str) -> dict[str, tuple[Any, ...]]:
    with engine.connect() as connection:
        return {
            row[0]: tuple(row[1:])
            for row in connection.execute(sa.text(f"SELECT * FROM {name} ORDER BY id"))
        }


def test_the_adapter_reports_the_foreign_key_as_a_relation(crm: Any) -> None:
    _, adapter = crm
    (relation,) = adapter.relations("contacts")
    assert (relation.field, relation.parent) == ("account_id", "accounts")
    assert adapter.relations("accounts") == ()


def test_children_are_deleted_before_their_parent_whatever_the_log_order(
    crm: Any, ledger: Ledger
) -> None:
    """The batch created an account, a contact in it, then renamed the account: the account's
    newest action is last, so reverse log order alone would delete it first and be refused."""
    engine, adapter = crm
    accounts, contacts = Target(adapter, "accounts"), Target(adapter, "contacts")
    with Run(ledger, "import") as run:
        run.create(accounts, "a9", {"name": "Nine"})
        run.create(contacts, "c9", {"name": "Nia", "account_id": "a9"})
        run.update(accounts, "a9", {"name": "Nine Ltd"})

    chosen = plan_rollback(ledger, RollbackScope(batches=("import",)), {"crm": adapter})
    assert [c.entity for c in chosen.compensations] == ["crm/contacts/c9", "crm/accounts/a9"]
    report = apply_rollback(ledger, chosen, {"crm": adapter})

    assert report.counts == {"deleted": 2}
    assert "a9" not in table(engine, "accounts") and "c9" not in table(engine, "contacts")


def test_a_parent_is_re_created_before_a_child_is_pointed_back_at_it(
    crm: Any, ledger: Ledger
) -> None:
    """The batch moved c1 to account a2, deleted the emptied a1, then renamed c1: undoing it
    must bring a1 back before c1 points at it again, though c1's action is newer."""
    engine, adapter = crm
    accounts, contacts = Target(adapter, "accounts"), Target(adapter, "contacts")
    with Run(ledger, "merge-accounts") as run:
        run.update(contacts, "c1", {"account_id": "a2"})
        run.delete(accounts, "a1")
        run.update(contacts, "c1", {"name": "Ada L."})

    chosen = plan_rollback(ledger, RollbackScope(batches=("merge-accounts",)), {"crm": adapter})
    assert [c.entity for c in chosen.compensations] == ["crm/accounts/a1", "crm/contacts/c1"]
    report = apply_rollback(ledger, chosen, {"crm": adapter})

    assert report.counts == {"re-created": 1, "restored": 1}
    assert report.mismatches == []
    assert table(engine, "accounts")["a1"] == ("Acme",)
    assert table(engine, "contacts")["c1"] == ("Ada", "a1")


def delete_c2_then_lose_a2(engine: sa.Engine, adapter: SqlAdapter, ledger: Ledger) -> None:
    """A bad batch deletes contact c2; afterwards someone deletes its account a2 for good."""
    with Run(ledger, "cleanup") as run:
        run.delete(Target(adapter, "contacts"), "c2")
        run.update(Target(adapter, "contacts"), "c1", {"name": "Ada (checked)"})
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM accounts WHERE id = 'a2'"))


def test_a_record_whose_parent_is_gone_is_skipped_and_listed(crm: Any, ledger: Ledger) -> None:
    engine, adapter = crm
    delete_c2_then_lose_a2(engine, adapter, ledger)

    chosen = plan_rollback(ledger, RollbackScope(batches=("cleanup",)), {"crm": adapter})

    (orphan,) = chosen.conflicts
    assert (orphan.entity, orphan.reason, orphan.fields) == (
        "crm/contacts/c2",
        "missing parent",
        ("account_id",),
    )
    assert orphan.competing[0]["value"] == "crm/accounts/a2"
    assert "missing parent" in chosen.runbook()
    report = apply_rollback(ledger, chosen, {"crm": adapter})
    assert report.counts == {"restored": 1, "skipped": 1}
    assert set(table(engine, "contacts")) == {"c1"}
    assert table(engine, "contacts")["c1"] == ("Ada", "a1")


def test_the_abort_policy_changes_nothing_when_a_parent_is_gone(crm: Any, ledger: Ledger) -> None:
    engine, adapter = crm
    delete_c2_then_lose_a2(engine, adapter, ledger)
    before = table(engine, "contacts")

    chosen = plan_rollback(
        ledger, RollbackScope(batches=("cleanup",)), {"crm": adapter}, missing_parent="abort"
    )

    assert chosen.aborted and chosen.compensations == ()
    apply_rollback(ledger, chosen, {"crm": adapter})
    assert table(engine, "contacts") == before


def test_a_parent_lost_after_planning_is_a_failure_naming_record_field_and_reference(
    crm: Any, ledger: Ledger
) -> None:
    engine, adapter = crm
    with Run(ledger, "cleanup") as run:
        run.delete(Target(adapter, "contacts"), "c2")
    chosen = plan_rollback(ledger, RollbackScope(batches=("cleanup",)), {"crm": adapter})
    assert chosen.conflicts == ()
    with engine.begin() as connection:  # the parent goes between plan and apply
        connection.execute(sa.text("DELETE FROM accounts WHERE id = 'a2'"))

    report = apply_rollback(ledger, chosen, {"crm": adapter})

    (failed,) = report.outcomes
    assert failed["outcome"] == "failed"
    assert "crm/contacts/c2" in failed["error"]
    assert "account_id" in failed["error"]
    assert "contact_account" in failed["error"] or "accounts" in failed["error"]
    assert "c2" not in table(engine, "contacts")


def lose_a_parent_after_planning(crm: Any, ledger: Ledger) -> Any:
    """A cleanup deleted c2 (in a2) and renamed c1; the plan is made; then a2 is deleted, so the
    re-creation of c2 will be refused by the foreign key while c1's restore is fine."""
    engine, adapter = crm
    with Run(ledger, "cleanup") as run:
        run.delete(Target(adapter, "contacts"), "c2")
        run.update(Target(adapter, "contacts"), "c1", {"name": "Ada (checked)"})
    chosen = plan_rollback(ledger, RollbackScope(batches=("cleanup",)), {"crm": adapter})
    assert [c.entity for c in chosen.compensations] == ["crm/contacts/c1", "crm/contacts/c2"]
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM accounts WHERE id = 'a2'"))
    return chosen


def restore_a2(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO accounts (id, name) VALUES ('a2', 'Bolt')"))


def test_a_refused_record_needs_attention_the_rest_goes_on_and_applying_again_finishes(
    crm: Any, ledger: Ledger
) -> None:
    engine, adapter = crm
    chosen = lose_a_parent_after_planning(crm, ledger)

    report = apply_rollback(ledger, chosen, {"crm": adapter})

    assert report.counts == {"restored": 1, "failed": 1}
    assert report.to_json()["needs_attention"] == ["crm/contacts/c2"]
    assert ledger.batch_view(chosen.batch).status == "open"  # something is left to do
    restore_a2(engine)
    again = apply_rollback(ledger, chosen, {"crm": adapter})
    assert again.counts == {"restored": 1, "re-created": 1}
    assert again.needs_attention == []
    assert table(engine, "contacts") == {"c1": ("Ada", "a1"), "c2": ("Bo", "a2")}
    assert ledger.batch_view(chosen.batch).status == "closed"


def test_stop_on_failure_leaves_the_rest_not_attempted_until_applied_again(
    crm: Any, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, adapter = crm
    chosen = lose_a_parent_after_planning(crm, ledger)
    reversed_order = replace(chosen, compensations=chosen.compensations[::-1])  # c2 first
    monkeypatch.setattr("ledger.rollback.execution.APPLY_CHUNK", 1)  # one record per chunk

    report = apply_rollback(ledger, reversed_order, {"crm": adapter}, on_failure="stop")

    assert [o["outcome"] for o in report.outcomes] == ["failed", "not attempted"]
    assert table(engine, "contacts")["c1"] == ("Ada (checked)", "a1")  # untouched
    restore_a2(engine)
    again = apply_rollback(ledger, reversed_order, {"crm": adapter}, on_failure="stop")
    assert again.counts == {"re-created": 1, "restored": 1}
    assert table(engine, "contacts") == {"c1": ("Ada", "a1"), "c2": ("Bo", "a2")}


def test_relations_declared_in_the_configuration_order_an_http_rollback_and_find_orphans(
    tmp_path: Any, ledger: Ledger
) -> None:
    """A REST API does not describe its references, so they are declared per collection
    (``parents = {account_id = "accounts"}``); the rollback then plans as it does for SQL."""
    config = tmp_path / "ledger.toml"
    with CrmServer() as server:
        server.seed("accounts", {"a1": {"name": "Acme"}, "a2": {"name": "Bolt"}})
        server.seed("contacts", {"c2": {"name": "Bo", "account_id": "a2"}})
        config.write_text(
            f'[systems.crm]\ntype = "http"\nbase_url = "{server.url}"\n'
            'collections.accounts = { path = "/accounts" }\n'
            'collections.contacts = { path = "/contacts", parents = { account_id = "accounts" } }\n'
        )
        adapters = open_adapters(str(config))
        crm = adapters["crm"]
        (relation,) = crm.relations("contacts")
        assert (relation.field, relation.parent) == ("account_id", "accounts")
        with Run(ledger, "import") as run:
            run.create(Target(crm, "accounts"), "a9", {"name": "Nine"})
            run.create(Target(crm, "contacts"), "c9", {"name": "Nia", "account_id": "a9"})
            run.update(Target(crm, "accounts"), "a9", {"name": "Nine Ltd"})
            run.delete(Target(crm, "contacts"), "c2")
        server.remove("accounts", "a2")  # someone deletes account a2 in the CRM's own UI

        chosen = plan_rollback(ledger, RollbackScope(batches=("import",)), adapters)

        assert [c.entity for c in chosen.compensations] == ["crm/contacts/c9", "crm/accounts/a9"]
        assert [(c.entity, c.reason) for c in chosen.conflicts] == [
            ("crm/contacts/c2", "missing parent")
        ]
        crm.close()


def test_a_declared_parent_that_is_not_a_collection_is_a_configuration_error(
    tmp_path: Any,
) -> None:
    config = tmp_path / "ledger.toml"
    config.write_text(
        '[systems.crm]\ntype = "http"\nbase_url = "http://127.0.0.1:9"\n'
        'collections.contacts = { path = "/contacts", parents = { account_id = "acounts" } }\n'
    )
    crm = open_adapters(str(config))["crm"]
    with pytest.raises(ConfigurationError, match=r"parents\.account_id names 'acounts'"):
        crm.relations("contacts")
    crm.close()
