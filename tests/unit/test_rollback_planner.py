"""The pure rollback planner: one record's history (built in memory) and its target image in,
its compensation and/or conflict out. No database, no adapter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ledger import ABSENT, Address
from ledger.domain import Entity
from ledger.rollback import Compensation, Conflict, Contract, FollowUp
from ledger.rollback.contracts import held_by_contract, protected_kept
from ledger.rollback.model import ScopedAction
from ledger.rollback.planner import EntityPlan, plan_entity, read_history, state_at

ENTITY = "crm/contacts/1"


def history(*actions: tuple[str, str, dict[str, Any], dict[str, Any]], **links: Any) -> list:
    """Actions (batch, operation, before, after) on one record, as the event store returns them;
    ``links`` maps an action's index to its ``compensates`` fingerprints."""
    record: Entity | None = None
    for index, (batch, operation, before, after) in enumerate(actions):
        action = {
            "operation": operation,
            "before": before,
            "after": after,
            "compensation": {},
            "inputs": {},
            "workflow": None,
            "workflow_version": None,
            "batch": batch,
            "actor": None,
            "trigger": None,
            "sources": [],
            "effective_at": None,
            "fingerprint": f"{batch}:{index}",
            "compensates": links.get(str(index), []),
        }
        if record is None:
            record = Entity.first(Address.parse(ENTITY), **action)
        else:
            record.record(**action)
    assert record is not None
    return list(record.collect_events())


def in_scope(events: list, batch: str) -> list[ScopedAction]:
    """The scope's actions on the record: the batch's, with made-up log positions."""
    return [
        ScopedAction(e.originator_version, 100 + e.originator_version, e.fingerprint)
        for e in events
        if e.batch == batch
    ]


def plan_for(events: list, image: dict[str, Any] | None, **options: Any) -> EntityPlan:
    actions = in_scope(events, "bad")
    scoped = {a.fingerprint for a in actions}
    return plan_entity(ENTITY, events, actions, scoped, image, **{"policy": "skip", **options})


SEEDED = ("seed", "create", {}, {"stage": "lead", "owner": "ann"})
BAD = ("bad", "update", {"stage": "lead"}, {"stage": "won"})


def test_an_update_in_scope_is_restored_compare_and_set_against_the_whole_record() -> None:
    events = history(SEEDED, BAD)
    planned = plan_for(events, {"stage": "won", "owner": "ann"})
    assert planned == EntityPlan(
        Compensation(
            ENTITY,
            "update",
            {"stage": "lead"},
            (),
            {"owner": "ann", "stage": "won"},
            ("bad:1",),
            102,
        )
    )


def test_a_later_action_by_someone_else_is_a_record_level_conflict_under_skip() -> None:
    events = history(SEEDED, BAD, ("other", "update", {"owner": "ann"}, {"owner": "bo"}))
    planned = plan_for(events, {"stage": "won", "owner": "bo"})
    assert planned.compensation is None
    assert planned.conflict == Conflict(
        ENTITY,
        "later action",
        ("owner",),
        ({"field": "owner", "value": "bo", "by": "other", "batch": "other", "version": 3},),
    )


def test_under_fields_a_later_edit_of_another_field_does_not_stop_the_restore() -> None:
    events = history(SEEDED, BAD, ("other", "update", {"owner": "ann"}, {"owner": "bo"}))
    planned = plan_for(events, {"stage": "won", "owner": "bo"}, policy="fields")
    assert planned.conflict is None
    assert planned.compensation is not None
    assert (planned.compensation.values, planned.compensation.expected) == (
        {"stage": "lead"},
        {"stage": "won"},
    )


def test_drift_in_the_target_is_a_conflict_and_force_restores_against_what_it_holds() -> None:
    events = history(SEEDED, BAD)
    drifted = {"stage": "lost", "owner": "ann"}
    skipped = plan_for(events, drifted)
    assert skipped.compensation is None and skipped.conflict is not None
    assert skipped.conflict.reason == "drift in the target"
    assert skipped.conflict.competing == (
        {"field": "stage", "value": "lost", "by": "outside the ledger"},
    )
    forced = plan_for(events, drifted, policy="force")
    assert forced.compensation is not None
    assert forced.compensation.expected == {"stage": "lost"}
    assert forced.compensation.values == {"stage": "lead"}


def test_a_create_in_scope_is_deleted_and_a_delete_in_scope_re_created() -> None:
    created = history(("bad", "create", {}, {"stage": "lead"}))
    planned = plan_for(created, {"stage": "lead"})
    assert planned.compensation is not None
    assert (planned.compensation.operation, planned.compensation.expected) == (
        "delete",
        {"stage": "lead"},
    )
    deleted = history(SEEDED, ("bad", "delete", {"stage": "lead", "owner": "ann"}, {}))
    planned = plan_for(deleted, None)
    assert planned.compensation is not None
    assert planned.compensation.kind == "re-create"
    assert planned.compensation.values == {"stage": "lead", "owner": "ann"}


def test_an_action_that_changed_nothing_needs_nothing() -> None:
    events = history(SEEDED, ("bad", "update", {"stage": "lead"}, {"stage": "lead"}))
    assert plan_for(events, {"stage": "lead", "owner": "ann"}) == EntityPlan()


def test_a_record_already_rolled_back_by_this_scope_is_done() -> None:
    undo = ("rollback-x", "update", {"stage": "won"}, {"stage": "lead"})
    events = history(SEEDED, BAD, undo, **{"2": ["bad:1"]})
    assert plan_for(events, {"stage": "lead", "owner": "ann"}) == EntityPlan(done=True)


def test_protected_fields_are_not_restored_and_listed_for_review() -> None:
    events = history(
        SEEDED,
        ("bad", "update", {"stage": "lead", "owner": "ann"}, {"stage": "won", "owner": "bo"}),
    )
    contract = Contract(protected=("owner",), owner="ops")
    planned = plan_for(events, {"stage": "won", "owner": "bo"}, protected=contract.protected)
    assert planned.compensation is not None
    assert planned.compensation.values == {"stage": "lead"}
    assert protected_kept(ENTITY, events, in_scope(events, "bad"), contract) == FollowUp(
        ENTITY, "review", "protected field(s) owner left as they are", "ops"
    )


def test_redo_returns_to_the_state_the_scope_left() -> None:
    events = history(SEEDED, BAD, ("other", "update", {"stage": "won"}, {"stage": "lead"}))
    actions = in_scope(events, "bad")
    record = read_history(events, actions, {"bad:1"}, "redo")
    assert record.before == {"stage": "won", "owner": "ann"}
    assert record.now == {"stage": "lead", "owner": "ann"}


def test_a_record_first_seen_by_an_update_existed_before_it() -> None:
    events = history(("bad", "update", {"stage": "lead"}, {"stage": "won"}))
    assert state_at(events, 0) == ({"stage": "lead"}, True)
    assert state_at(events, 1) == ({"stage": "won"}, True)
    record = read_history(events, in_scope(events, "bad"), {"bad:0"}, "undo")
    assert (record.before, record.first_touch) == ({"stage": "lead"}, {"stage": 1})
    planned = plan_for(events, {"stage": "won", "other": ABSENT})
    assert planned.compensation is not None and planned.compensation.values == {"stage": "lead"}


def test_actions_outside_the_rollback_window_are_held_for_review() -> None:
    events = history(SEEDED, BAD)
    now = events[-1].timestamp + timedelta(days=2)
    window = Contract(window=timedelta(days=1), owner="ops")
    held = held_by_contract(ENTITY, events, in_scope(events, "bad"), window, now)
    assert held is not None and (held.action, held.owner) == ("review", "ops")
    assert "outside the rollback window" in held.reason
    repair = Contract(repair="notify")
    assert held_by_contract(ENTITY, events, [], repair, datetime.now(UTC)) == FollowUp(
        ENTITY, "notify", "not reversible by a write (declared in the rollback contract)"
    )
