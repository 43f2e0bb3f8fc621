"""Rolling back a batch: plan first, conflicts listed, compensations applied exactly once."""

import pytest

from adapters.memory import MemoryAdapter
from ledger import (
    ABSENT,
    Address,
    Change,
    RollbackPlan,
    RollbackScope,
    apply_rollback,
    plan_rollback,
)
from ledger.errors import InvalidChange
from ledger.ports import Write
from ledger.runs import Run, Target

SEED = {
    "1": {"stage": "lead", "owner": "ann"},
    "2": {"stage": "mql", "owner": "bo"},
    "3": {"stage": "lead", "owner": "cy"},
}


@pytest.fixture
def crm():
    return MemoryAdapter("crm", {"contacts": {k: dict(v) for k, v in SEED.items()}})


def contact(key):
    return Address("crm", "contacts", key)


def run_batch(ledger, adapter, name, changes):
    with Run(ledger, name) as run:
        run.apply(Target(adapter, "contacts"), changes)


def sync(ledger, crm, name="lead-sync-1", keys=("1", "2", "3")):
    run_batch(
        ledger,
        crm,
        name,
        [Change(contact(k), "update", values={"stage": "sql", "owner": "dara"}) for k in keys],
    )


def outside_edit(crm, key, **values):
    crm.write("contacts", [Write(key, "update", values, expected={})])


def test_a_clean_batch_is_restored_field_for_field(ledger, crm):
    sync(ledger, crm)
    rollback = plan_rollback(ledger, RollbackScope(batches=("lead-sync-1",)), {"crm": crm})
    assert [c.kind for c in rollback.compensations] == ["restore"] * 3
    assert rollback.conflicts == ()
    report = apply_rollback(ledger, rollback, {"crm": crm})
    assert report.counts == {"restored": 3}
    assert report.mismatches == []
    assert dict(crm.scan("contacts")) == SEED


def test_planning_changes_nothing(ledger, crm):
    sync(ledger, crm)
    events = ledger.recorder.max_notification_id()
    plan_rollback(ledger, RollbackScope(batches=("lead-sync-1",)), {"crm": crm})
    assert ledger.recorder.max_notification_id() == events
    assert crm.read("contacts", ["1"])["1"] == {"stage": "sql", "owner": "dara"}


def test_records_edited_since_are_conflicts_and_left_alone_under_skip(ledger, crm):
    sync(ledger, crm)
    outside_edit(crm, "2", stage="customer")  # drift, not yet known to the ledger
    run_batch(ledger, crm, "later", [Change(contact("3"), "update", values={"owner": "eve"})])
    rollback = plan_rollback(ledger, RollbackScope(batches=("lead-sync-1",)), {"crm": crm})
    conflicts = {c.entity: c for c in rollback.conflicts}
    assert set(conflicts) == {"crm/contacts/2", "crm/contacts/3"}
    assert conflicts["crm/contacts/2"].reason == "drift in the target"
    assert conflicts["crm/contacts/2"].competing[0]["value"] == "customer"
    assert conflicts["crm/contacts/3"].reason == "later action"
    assert conflicts["crm/contacts/3"].competing[0]["batch"] == "later"
    report = apply_rollback(ledger, rollback, {"crm": crm})
    assert report.counts == {"restored": 1, "skipped": 2}
    assert crm.read("contacts", ["1", "2", "3"]) == {
        "1": SEED["1"],
        "2": {"stage": "customer", "owner": "dara"},
        "3": {"stage": "sql", "owner": "eve"},
    }


def test_policy_fields_restores_the_fields_nobody_touched_since(ledger, crm):
    sync(ledger, crm)
    run_batch(ledger, crm, "later", [Change(contact("3"), "update", values={"owner": "eve"})])
    report = apply_rollback(
        ledger,
        plan_rollback(
            ledger, RollbackScope(batches=("lead-sync-1",)), {"crm": crm}, policy="fields"
        ),
        {"crm": crm},
    )
    assert report.counts == {"restored": 3}
    assert crm.read("contacts", ["3"])["3"] == {"stage": "lead", "owner": "eve"}


def test_policy_force_restores_anyway_and_abort_changes_nothing(ledger, crm):
    sync(ledger, crm)
    outside_edit(crm, "2", stage="customer")
    aborted = plan_rollback(
        ledger, RollbackScope(batches=("lead-sync-1",)), {"crm": crm}, policy="abort"
    )
    assert aborted.aborted and aborted.compensations == ()
    assert apply_rollback(ledger, aborted, {"crm": crm}).counts == {"skipped": 1}
    forced = plan_rollback(
        ledger, RollbackScope(batches=("lead-sync-1",)), {"crm": crm}, policy="force"
    )
    apply_rollback(ledger, forced, {"crm": crm})
    assert dict(crm.scan("contacts")) == SEED


def test_a_record_that_moves_between_plan_and_apply_is_skipped_not_overwritten(ledger, crm):
    sync(ledger, crm)
    rollback = plan_rollback(ledger, RollbackScope(batches=("lead-sync-1",)), {"crm": crm})
    outside_edit(crm, "1", owner="zed")
    run_batch(ledger, crm, "later", [Change(contact("2"), "update", values={"owner": "eve"})])
    report = apply_rollback(ledger, rollback, {"crm": crm})
    outcomes = {o["entity"]: o for o in report.outcomes}
    assert outcomes["crm/contacts/1"]["outcome"] == "skipped"
    assert outcomes["crm/contacts/1"]["actual"] == "zed"
    assert outcomes["crm/contacts/2"]["outcome"] == "skipped"
    assert outcomes["crm/contacts/3"]["outcome"] == "restored"
    assert crm.read("contacts", ["1", "2"]) == {
        "1": {"stage": "sql", "owner": "zed"},
        "2": {"stage": "sql", "owner": "eve"},
    }


def test_applying_again_and_planning_again_change_nothing(ledger, crm):
    sync(ledger, crm)
    rollback = plan_rollback(ledger, RollbackScope(batches=("lead-sync-1",)), {"crm": crm})
    apply_rollback(ledger, rollback, {"crm": crm})
    events = ledger.recorder.max_notification_id()
    again = apply_rollback(ledger, rollback, {"crm": crm})
    assert {o.get("note") for o in again.outcomes} == {
        "already applied by an earlier run of this rollback"
    }
    replanned = plan_rollback(ledger, RollbackScope(batches=("lead-sync-1",)), {"crm": crm})
    assert replanned.compensations == () and replanned.conflicts == ()
    assert len(replanned.already_rolled_back) == 3
    assert ledger.recorder.max_notification_id() == events


def test_the_rollback_is_recorded_and_can_itself_be_rolled_back(ledger, crm):
    sync(ledger, crm)
    rollback = plan_rollback(ledger, RollbackScope(batches=("lead-sync-1",)), {"crm": crm})
    apply_rollback(ledger, rollback, {"crm": crm})
    compensation = ledger.history(contact("1"))[-1]
    assert compensation.batch == rollback.batch
    assert compensation.inputs == {}
    (synced,) = [a for a in ledger.history(contact("1")) if a.batch == "lead-sync-1"]
    assert compensation.compensates == (synced.fingerprint,)
    redo = plan_rollback(ledger, RollbackScope(batches=(rollback.batch,)), {"crm": crm})
    apply_rollback(ledger, redo, {"crm": crm})
    assert crm.read("contacts", ["1"])["1"] == {"stage": "sql", "owner": "dara"}


def test_created_records_are_deleted_and_deleted_ones_recreated(ledger, crm):
    run_batch(
        ledger,
        crm,
        "b",
        [
            Change(contact("9"), "create", values={"stage": "new", "owner": "x"}),
            Change(contact("1"), "delete"),
        ],
    )
    rollback = plan_rollback(ledger, RollbackScope(batches=("b",)), {"crm": crm})
    assert sorted(c.kind for c in rollback.compensations) == ["delete", "re-create"]
    report = apply_rollback(ledger, rollback, {"crm": crm})
    assert report.counts == {"deleted": 1, "re-created": 1}
    assert dict(crm.scan("contacts")) == SEED


def test_compensations_run_newest_first_across_systems(ledger, crm):
    sheet = MemoryAdapter("sheets", {"leads": {"1": {"status": "open"}}})
    order = []
    for adapter in (crm, sheet):
        write = adapter.write
        adapter.write = lambda c, w, write=write, name=adapter.system: (
            order.extend(f"{name}/{x.key}" for x in w) or write(c, w)
        )
    with Run(ledger, "multi") as run:
        run.update(Target(crm, "contacts"), 1, {"stage": "sql"})
        run.update(Target(sheet, "leads"), 1, {"status": "synced"})
        run.update(Target(crm, "contacts"), 2, {"stage": "sql"})
    order.clear()
    report = apply_rollback(
        ledger,
        plan_rollback(ledger, RollbackScope(batches=("multi",)), {"crm": crm, "sheets": sheet}),
        {"crm": crm, "sheets": sheet},
    )
    assert order == ["crm/2", "sheets/1", "crm/1"]
    assert report.counts == {"restored": 3}


def test_a_plan_saved_and_loaded_is_the_same_plan_and_prints_a_runbook(ledger, crm):
    sync(ledger, crm)
    outside_edit(crm, "2", stage="customer")
    rollback = plan_rollback(ledger, RollbackScope(batches=("lead-sync-1",)), {"crm": crm})
    assert RollbackPlan.loads(rollback.dumps()) == rollback
    runbook = rollback.runbook()
    assert "| 1 | crm/contacts/3 | restore |" in runbook
    assert "crm/contacts/2 | drift in the target" in runbook
    assert rollback.to_json()["conflicts"][0]["entity"] == "crm/contacts/2"


def test_a_rollback_since_a_checkpoint(ledger, crm):
    sync(ledger, crm, keys=("1",))
    ledger.checkpoint("cp")
    sync(ledger, crm, name="second", keys=("2",))
    rollback = plan_rollback(ledger, RollbackScope(since="cp"), {"crm": crm})
    assert [c.entity for c in rollback.compensations] == ["crm/contacts/2"]


def test_contracts_protect_fields_bound_the_window_and_declare_repairs(ledger, crm):
    from datetime import timedelta

    from freezegun import freeze_time

    from ledger.rollback import Contract

    mail = MemoryAdapter("mail", {"sent": {}})
    with freeze_time("2026-11-01T09:00:00Z"):
        run_batch(ledger, crm, "old", [Change(contact("3"), "update", values={"stage": "old"})])
    with freeze_time("2026-11-24T09:00:00Z"):
        sync(ledger, crm, name="b", keys=("1", "2"))
        with Run(ledger, "b2") as run:
            run.create(Target(mail, "sent"), "m1", {"to": "ann@example.com"})
        contracts = {
            ("crm", "contacts"): Contract(
                protected=("owner",), window=timedelta(days=7), owner="sales-ops"
            ),
            ("mail", "sent"): Contract(repair="notify", owner="support"),
        }
        rollback = plan_rollback(
            ledger,
            RollbackScope(batches=("b", "b2", "old")),
            {"crm": crm, "mail": mail},
            contracts=contracts,
        )
    assert [
        (c.entity, c.values) for c in sorted(rollback.compensations, key=lambda c: c.entity)
    ] == [("crm/contacts/1", {"stage": "lead"}), ("crm/contacts/2", {"stage": "mql"})]
    followups = {(f.entity, f.action, f.owner) for f in rollback.followups}
    assert followups == {
        ("crm/contacts/1", "review", "sales-ops"),
        ("crm/contacts/2", "review", "sales-ops"),
        ("crm/contacts/3", "review", "sales-ops"),
        ("mail/sent/m1", "notify", "support"),
    }
    assert "**notify** mail/sent/m1" in rollback.runbook()
    assert RollbackPlan.loads(rollback.dumps()) == rollback


def test_a_batch_replayed_after_a_mistaken_rollback_comes_back_once(ledger, crm):
    sync(ledger, crm)
    scope = RollbackScope(batches=("lead-sync-1",))
    apply_rollback(ledger, plan_rollback(ledger, scope, {"crm": crm}), {"crm": crm})
    assert dict(crm.scan("contacts")) == SEED
    replay = plan_rollback(ledger, scope, {"crm": crm}, direction="redo")
    assert replay.batch.startswith("replay-") and replay.conflicts == ()
    report = apply_rollback(ledger, replay, {"crm": crm})
    assert report.counts == {"restored": 3} and report.mismatches == []
    assert all(v == {"stage": "sql", "owner": "dara"} for _, v in crm.scan("contacts"))
    assert plan_rollback(ledger, scope, {"crm": crm}, direction="redo").compensations == ()
    again = plan_rollback(ledger, scope, {"crm": crm})  # and it can be rolled back once more
    assert len(again.compensations) == 3


def test_a_field_absent_when_planned_and_set_before_apply_is_not_overwritten(ledger):
    crm = MemoryAdapter("crm", {"contacts": {"1": {"stage": "lead"}}})
    run_batch(ledger, crm, "b", [Change(contact("1"), "update", values={"stage": "sql"}, unset=())])
    run_batch(ledger, crm, "b2", [Change(contact("1"), "update", unset=("stage",))])
    rollback = plan_rollback(ledger, RollbackScope(batches=("b2",)), {"crm": crm})
    assert rollback.compensations[0].expected == {"stage": ABSENT}
    outside_edit(crm, "1", stage="won")  # someone sets the field the plan expects absent
    report = apply_rollback(ledger, RollbackPlan.loads(rollback.dumps()), {"crm": crm})
    assert report.counts == {"skipped": 1}
    assert crm.read("contacts", ["1"])["1"] == {"stage": "won"}


def test_an_outside_edit_before_the_scope_touched_a_field_is_what_that_field_returns_to(
    ledger, crm
):
    """Two batches in scope: the first changes the stage, then someone reassigns the owner,
    then the second batch changes the owner. Under `fields` the owner goes back to the outside
    value (what it held when the scope first touched it), not to the value from before the
    first batch, and that edit is no conflict: it came before the scope touched the owner.
    Under `skip` the record is a conflict: someone changed it after the scope first did (the
    ledger knows the record whole, having created it, so it can tell)."""
    run_batch(ledger, crm, "new", [Change(contact("9"), "create", values=SEED["1"])])
    run_batch(ledger, crm, "stage-sync", [Change(contact("9"), "update", values={"stage": "sql"})])
    outside_edit(crm, "9", owner="eve")
    run_batch(ledger, crm, "owner-sync", [Change(contact("9"), "update", values={"owner": "dara"})])
    scope = RollbackScope(batches=("stage-sync", "owner-sync"))

    skipped = plan_rollback(ledger, scope, {"crm": crm})
    assert [(c.entity, c.fields) for c in skipped.conflicts] == [("crm/contacts/9", ("owner",))]
    assert skipped.compensations == ()

    rollback = plan_rollback(ledger, scope, {"crm": crm}, policy="fields")
    assert rollback.conflicts == ()
    apply_rollback(ledger, rollback, {"crm": crm})
    assert crm.read("contacts", ["9"])["9"] == {"stage": "lead", "owner": "eve"}


def test_skip_is_record_level_and_fields_merges_when_the_edit_is_in_another_field(ledger):
    """The batch changed the stage; afterwards someone changed the owner, outside the ledger
    (drift) on one record and through another batch (a later action) on the other. Under
    `skip` both records are conflicts and stay exactly as they are; under `fields` the stage
    comes back and the owner keeps the newer value."""
    seed = {"1": {"stage": "lead", "owner": "ann"}, "2": {"stage": "lead", "owner": "bo"}}
    for policy, kept in (("skip", {"stage": "sql"}), ("fields", {"stage": "lead"})):
        crm = MemoryAdapter("crm", {"contacts": {k: dict(v) for k, v in seed.items()}})
        batch = f"stage-sync-{policy}"
        run_batch(ledger, crm, f"seed-{policy}", [])
        with Run(ledger, batch) as run:
            for key in seed:
                run.create(Target(crm, "contacts"), f"{policy}-{key}", seed[key])
        with Run(ledger, f"{batch}-2") as run:
            for key in seed:
                run.update(Target(crm, "contacts"), f"{policy}-{key}", {"stage": "sql"})
        outside_edit(crm, f"{policy}-1", owner="zed")
        run_batch(
            ledger,
            crm,
            f"reassign-{policy}",
            [Change(contact(f"{policy}-2"), "update", values={"owner": "yan"})],
        )

        rollback = plan_rollback(
            ledger, RollbackScope(batches=(f"{batch}-2",)), {"crm": crm}, policy=policy
        )
        report = apply_rollback(ledger, rollback, {"crm": crm})

        reasons = {c.entity.rsplit("/", 1)[1]: (c.reason, c.fields) for c in rollback.conflicts}
        if policy == "skip":
            assert reasons == {
                "skip-1": ("drift in the target", ("owner",)),
                "skip-2": ("later action", ("owner",)),
            }
            assert report.counts == {"skipped": 2}
        else:
            assert reasons == {} and report.counts == {"restored": 2}
        assert crm.read("contacts", [f"{policy}-1"])[f"{policy}-1"] == {**kept, "owner": "zed"}
        assert crm.read("contacts", [f"{policy}-2"])[f"{policy}-2"] == {**kept, "owner": "yan"}


def test_under_skip_an_edit_to_any_field_between_plan_and_apply_leaves_the_record(ledger, crm):
    """The compensation names only the stage, but under `skip` the whole record must still be
    as planning saw it: an owner changed in between keeps the record as it is."""
    sync(ledger, crm, keys=("1",))
    run_batch(ledger, crm, "stage", [Change(contact("1"), "update", values={"stage": "won"})])
    rollback = plan_rollback(ledger, RollbackScope(batches=("stage",)), {"crm": crm})
    assert rollback.compensations[0].values == {"stage": "sql"}
    outside_edit(crm, "1", owner="zed")

    report = apply_rollback(ledger, rollback, {"crm": crm})

    assert report.counts == {"skipped": 1}
    assert report.outcomes[0]["field"] == "owner"
    assert crm.read("contacts", ["1"])["1"] == {"stage": "won", "owner": "zed"}


def test_a_finished_rollback_stays_done_when_its_records_change_afterwards(ledger, crm):
    """Rolled back, then edited by another batch: planning the same scope again finds every
    record already rolled back, not a conflict; a replay in between makes it undone again."""
    sync(ledger, crm, keys=("1", "2"))
    scope = RollbackScope(batches=("lead-sync-1",))
    apply_rollback(ledger, plan_rollback(ledger, scope, {"crm": crm}), {"crm": crm})
    run_batch(ledger, crm, "later", [Change(contact("1"), "update", values={"owner": "eve"})])

    again = plan_rollback(ledger, scope, {"crm": crm})

    assert again.compensations == () and again.conflicts == ()
    assert again.already_rolled_back == ("crm/contacts/1", "crm/contacts/2")
    apply_rollback(
        ledger,
        plan_rollback(ledger, scope, {"crm": crm}, direction="redo", policy="fields"),
        {"crm": crm},
    )
    undone = plan_rollback(ledger, scope, {"crm": crm}, policy="fields")
    assert {c.entity for c in undone.compensations} == {"crm/contacts/1", "crm/contacts/2"}


def test_a_baseline_taken_after_the_batch_is_no_change_since(ledger, crm):
    """The batch was recorded without an adapter (the ledger knew only the stage); a baseline
    (`ledger track`) then records the records whole: that is the ledger learning them, not
    someone changing them, so the rollback under `skip` restores them."""
    from ledger.tracking import track

    for key in ("1", "2"):
        ledger.record(
            Change(contact(key), "update", values={"stage": "sql"}, before={"stage": "lead"}),
            batch="recorded",
        )
        outside_edit(crm, key, stage="sql")
    track(ledger, crm, "contacts")
    assert ledger.history(contact("1"))[-1].operation == "track"

    rollback = plan_rollback(ledger, RollbackScope(batches=("recorded",)), {"crm": crm})

    assert rollback.conflicts == ()
    assert apply_rollback(ledger, rollback, {"crm": crm}).counts == {"restored": 2}
    assert crm.read("contacts", ["1", "2"]) == {"1": SEED["1"], "2": {**SEED["2"], "stage": "lead"}}


def test_an_unknown_direction_is_refused_naming_it_before_anything_is_read(ledger, crm):
    sync(ledger, crm)
    with pytest.raises(InvalidChange, match="direction 'sideways' is not one of undo, redo"):
        plan_rollback(
            ledger, RollbackScope(batches=("lead-sync-1",)), {"crm": crm}, direction="sideways"
        )
