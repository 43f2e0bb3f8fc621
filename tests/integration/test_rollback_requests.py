"""A rollback as a person asks for it (ledger.rollback_requests): well-formed scopes, options that
go together with a saved plan, and what a plan leaves for review."""

import re

import pytest

from adapters.memory import MemoryAdapter
from ledger import Address, Change, InvalidChange, plan_rollback
from ledger.ports import Write
from ledger.rollback_requests import (
    ScopeCheck,
    for_review,
    load_saved_plan,
    rollback_scope,
)
from ledger.runs import Run, Target


@pytest.fixture
def crm():
    return MemoryAdapter("crm", {"contacts": {k: {"stage": "lead"} for k in ("1", "2")}})


def synced(ledger, crm):
    with Run(ledger, "sync-1") as run:
        run.apply(
            Target(crm, "contacts"),
            [
                Change(Address("crm", "contacts", k), "update", values={"stage": "sql"})
                for k in "12"
            ],
        )


@pytest.mark.parametrize(
    "given, message, option",
    [
        ({"collection": "contacts"}, "--collection needs --system", "--collection"),
        ({"workflow": "lead-sync"}, "--workflow needs --since (or --batch)", "--workflow"),
    ],
)
def test_a_scope_that_cannot_mean_what_was_asked_is_refused(given, message, option):
    with pytest.raises(InvalidChange, match=re.escape(message)) as refused:
        rollback_scope(**given)
    assert refused.value.field == option


def test_a_well_formed_scope_is_the_scope_asked_for():
    scope = rollback_scope(["b1"], "lead-sync", None, "crm", "contacts")
    assert (scope.batches, scope.workflow, scope.system, scope.collection) == (
        ("b1",),
        "lead-sync",
        "crm",
        "contacts",
    )
    assert rollback_scope(workflow="lead-sync", since="before").since == "before"


def test_a_saved_plan_takes_no_scope_and_keeps_its_planning_options(ledger, crm, tmp_path):
    synced(ledger, crm)
    saved = tmp_path / "plan.bin"
    saved.write_bytes(plan_rollback(ledger, rollback_scope(["sync-1"]), {"crm": crm}).dumps())
    with pytest.raises(InvalidChange, match="give --plan or a scope, not both"):
        load_saved_plan(saved, scope_given=True)
    for option in ("policy", "missing_parent"):
        with pytest.raises(InvalidChange, match="applies when planning") as refused:
            load_saved_plan(saved, scope_given=False, planning_options_given=[option])
        assert refused.value.field == "--" + option.replace("_", "-")
    loaded = load_saved_plan(saved, scope_given=False)
    assert [c.entity for c in loaded.compensations] == ["crm/contacts/2", "crm/contacts/1"]
    saved.write_bytes(saved.read_bytes().replace(b"sync-1", b"sync-2"))
    with pytest.raises(InvalidChange, match=f"^{saved}: ") as refused:
        load_saved_plan(saved, scope_given=False)
    assert refused.value.field == "--plan"


def test_a_conflict_blocks_the_check_and_is_left_for_review(ledger, crm):
    synced(ledger, crm)
    clean = plan_rollback(ledger, rollback_scope(["sync-1"]), {"crm": crm})
    assert not for_review(clean)
    assert ScopeCheck.of(clean).to_json() == {
        "scope": "batch sync-1",
        "reversible": {"restore": 2},
        "blocked": [],
        "already_rolled_back": 0,
        "cautions": [],
        "clean": True,
    }
    crm.write("contacts", [Write("2", "update", {"stage": "customer"}, expected={})])
    blocked = plan_rollback(ledger, rollback_scope(["sync-1"]), {"crm": crm})
    check = ScopeCheck.of(blocked)
    assert for_review(blocked) and check.blocked
    assert check.kinds == {"restore": 1}
    assert [(b.entity, b.reason, b.fields) for b in check.blockers] == [
        ("crm/contacts/2", "drift in the target", ("stage",))
    ]
