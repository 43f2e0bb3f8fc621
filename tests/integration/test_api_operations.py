"""Reconciling and lanes over HTTP, against a live server and a real SQLite CRM: drift edited
outside the ledger is found with both values, planned minimally and corrected; a paused lane
answers 423 with its reason; an enable is refused naming each unmet condition, then allowed
with the evidence."""

from __future__ import annotations

import contextlib
import sqlite3

from ledger.lane_evidence import last_reconciliation

CHECK = {"system": "crm", "collection": "contacts"}


def test_check_lists_a_crm_row_edited_outside_the_ledger_with_both_values(api):
    api.edit("7", "customer")
    with api.client("reader") as client:
        response = client.post("/v1/reconcile/check", json=CHECK)
    assert response.status_code == 200, response.text
    found = response.json()
    assert (found["drifted"], found["counts"], found["clean"]) == (1, {"fields": 1}, False)
    assert found["drifts"] == [
        {
            "key": "7",
            "kind": "fields",
            "ledger_version": 1,
            "fields": {"stage": {"ledger": "lead", "target": "customer"}},
        }
    ]
    assert found["next_cursor"] is None
    recorded = last_reconciliation(api.ledger, "crm/contacts")  # lane evidence, as the CLI's
    assert (recorded.drifted, recorded.checked) == (1, 50)
    assert found["recorded"]["actor"] == "reader"
    assert api.stage("7") == "customer"  # a check changes nothing in the CRM


def test_plan_proposes_the_minimal_correction_and_changes_nothing(api):
    api.edit("7", "customer")
    with api.client("reader") as client:
        response = client.post("/v1/reconcile/plan", json={**CHECK, "policy": "ledger"})
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["corrections"] == [
        {
            "key": "7",
            "operation": "update",
            "set": {"stage": "lead"},
            "unset": [],
            "expected": {"stage": "customer"},
            "expected_absent": [],
        }
    ]
    assert (plan["adoptions"], plan["skipped"]) == ([], [])
    assert plan["steps"] == {"corrections": 1, "adoptions": 0, "skipped": 0}
    assert api.stage("7") == "customer"
    assert last_reconciliation(api.ledger, "crm/contacts") is None  # a plan is not a check


def test_apply_under_policy_ledger_corrects_the_crm_row_and_verifies(api):
    api.edit("7", "customer")
    with api.client("admin", **{"Idempotency-Key": "fix-7"}) as client:
        response = client.post("/v1/reconcile/apply", json={**CHECK, "policy": "ledger"})
        again = client.post("/v1/reconcile/apply", json={**CHECK, "policy": "ledger"})
    assert response.status_code == 200, response.text
    done = response.json()
    assert done["counts"] == {"applied": 1}
    assert done["verification"]["clean"] is True
    assert done["recorded"]["drifted"] == 0  # the clean comparison afterwards is evidence
    assert api.stage("7") == "lead"
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == done
    history = api.ledger.history(_address("crm/contacts/7"))
    assert [(a.workflow, a.actor, a.delta.get("stage")) for a in history[1:]] == [
        (None, "external", ("lead", "customer")),  # the outside edit, recorded as observed
        ("reconcile", "reconcile", ("customer", "lead")),
    ]


def test_apply_under_policy_target_adopts_the_edit_into_the_ledger(api):
    api.edit("7", "customer")
    with api.client("admin") as client:
        response = client.post("/v1/reconcile/apply", json={**CHECK, "policy": "target"})
    assert response.status_code == 200, response.text
    assert response.json()["counts"] == {"adopted": 1}
    assert api.stage("7") == "customer"
    assert api.ledger.state(_address("crm/contacts/7")).fields["stage"] == "customer"


def test_drifts_and_plan_steps_come_a_page_at_a_time_and_only_the_first_check_is_recorded(api):
    edited = ["12", "3", "31", "44", "9"]
    for key in edited:
        api.edit(key, "customer")
    pages, plan_pages, cursor, plan_cursor = [], [], None, None
    with api.client("reader") as client:
        while True:
            page = client.post(
                "/v1/reconcile/check", json={**CHECK, "limit": 2, "cursor": cursor}
            ).json()
            pages.append(page)
            cursor = page["next_cursor"]
            if cursor is None:
                break
        while True:
            page = client.post(
                "/v1/reconcile/plan",
                json={**CHECK, "policy": "ledger", "limit": 2, "cursor": plan_cursor},
            ).json()
            plan_pages.append(page)
            plan_cursor = page["next_cursor"]
            if plan_cursor is None:
                break
    assert [[d["key"] for d in page["drifts"]] for page in pages] == [
        ["12", "3"],
        ["31", "44"],
        ["9"],
    ]
    assert all(page["drifted"] == 5 for page in pages)  # counts are the whole collection's
    assert [page["recorded"] is not None for page in pages] == [True, False, False]
    assert [[c["key"] for c in page["corrections"]] for page in plan_pages] == [
        ["12", "3"],
        ["31", "44"],
        ["9"],
    ]
    assert plan_pages[0]["steps"]["corrections"] == 5


def test_reconcile_refuses_what_the_token_may_not_do_and_bad_input(api):
    plan = {**CHECK, "policy": "ledger"}
    with api.client("recorder") as recorder:
        no_read = recorder.post("/v1/reconcile/check", json=CHECK)
    with api.client("applier") as applier:
        no_admin = applier.post("/v1/reconcile/apply", json=plan)
    with api.client("crm-reader") as crm_reader:
        own = crm_reader.post("/v1/reconcile/check", json=CHECK)
        other = crm_reader.post("/v1/reconcile/plan", json={**plan, "system": "erp"})
    with api.client("lead-admin") as lead_admin:
        not_its_workflow = lead_admin.post("/v1/reconcile/apply", json=plan)
    with api.client("admin") as admin:
        no_policy = admin.post("/v1/reconcile/apply", json=CHECK)
        unknown = admin.post("/v1/reconcile/check", json={**CHECK, "system": "erp"})
        no_such = admin.post("/v1/reconcile/check", json={**CHECK, "collection": "orders"})
        extra = admin.post("/v1/reconcile/check", json={**CHECK, "polcy": "ledger"})
        bad_at = admin.post("/v1/reconcile/check", json={**CHECK, "at": "checkpoint:nope"})
        bad_cursor = admin.post("/v1/reconcile/check", json={**CHECK, "cursor": "x"})
    assert (no_read.status_code, no_admin.status_code) == (403, 403)
    assert "this needs 'admin'" in no_admin.json()["message"]
    assert own.status_code == 200
    assert other.status_code == 403 and other.json()["field"] == "system"
    assert not_its_workflow.status_code == 403
    assert "not 'reconcile'" in not_its_workflow.json()["message"]
    assert (no_policy.status_code, no_policy.json()["field"]) == (422, "policy")
    assert (unknown.status_code, unknown.json()["field"]) == (422, "system")
    assert (no_such.status_code, no_such.json()["field"]) == (422, "collection")
    assert "known: contacts" in no_such.json()["message"]
    assert (extra.status_code, extra.json()["field"]) == (422, "polcy")
    assert bad_at.status_code == 404
    assert (bad_cursor.status_code, bad_cursor.json()["field"]) == (422, "cursor")


def test_a_paused_lane_makes_apply_answer_423_with_the_reason(api):
    change = {"entity": "crm/contacts/1", "op": "update", "set": {"stage": "mql"}}
    apply = {"system": "crm", "batch": "b1", "workflow": "lead-sync", "changes": [change]}
    with api.client("sync-bot") as client:
        paused = client.post("/v1/lanes/lead-sync/pause", json={"reason": "owners look wrong"})
        refused = client.post("/v1/apply", json=apply)
        lane = client.get("/v1/lanes/lead-sync").json()
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused_now"] is True
    assert refused.status_code == 423
    problem = refused.json()
    assert (problem["error"], problem["reason"], problem["paused_by"]) == (
        "paused",
        "owners look wrong",
        "sync-bot",
    )
    assert api.stage("1") == "lead"
    assert (lane["state"], lane["pause"]["actor"]) == ("paused", "sync-bot")


def test_enable_is_refused_with_each_unmet_condition_then_allowed_with_the_evidence(lanes_api):
    api = lanes_api
    with api.client("sync-bot") as bot:
        assert bot.post("/v1/lanes/lead-sync/pause", json={"reason": "drift"}).status_code == 200
    with api.client("admin") as admin:
        refused = admin.post("/v1/lanes/lead-sync/enable", json={"reason": "fixed"})
        assert admin.post("/v1/reconcile/check", json=CHECK).json()["clean"] is True
        still = admin.post("/v1/lanes/lead-sync/enable", json={"reason": "fixed"})
        enabled = admin.post(
            "/v1/lanes/lead-sync/enable", json={"reason": "fixed", "approver": "carol"}
        )
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["error"] == "unproved"
    assert len(problem["unmet"]) == 2
    assert any("crm/contacts" in condition for condition in problem["unmet"])
    assert any("approver" in condition for condition in problem["unmet"])
    assert still.status_code == 409 and len(still.json()["unmet"]) == 1
    assert enabled.status_code == 200, enabled.text
    assert len(enabled.json()["met"]) == 2 and enabled.json()["unmet"] == []
    assert enabled.json()["lane"]["state"] == "active"
    assert enabled.json()["lane"]["last_enable"]["actor"] == "admin"


def test_an_override_needs_a_reason_and_is_recorded_as_one(lanes_api):
    api = lanes_api
    with api.client("admin") as admin:
        admin.post("/v1/lanes/lead-sync/pause", json={"reason": "drift"})
        no_reason = admin.post("/v1/lanes/lead-sync/enable", json={"override": True})
        blank = admin.post("/v1/lanes/lead-sync/enable", json={"reason": "", "override": True})
        overridden = admin.post(
            "/v1/lanes/lead-sync/enable", json={"reason": "incident 12", "override": True}
        )
    assert (no_reason.status_code, no_reason.json()["field"]) == (422, "reason")
    assert blank.status_code == 422
    assert overridden.status_code == 200, overridden.text
    last = overridden.json()["lane"]["last_enable"]
    assert (last["override"], last["reason"]) == (True, "incident 12")
    assert len(overridden.json()["unmet"]) == 2  # recorded as overridden, not as proved


def test_a_canary_admits_one_batch_through_a_paused_lane(api):
    change = {"entity": "crm/contacts/2", "op": "update", "set": {"stage": "mql"}}
    with api.client("admin") as admin:
        admin.post("/v1/lanes/lead-sync/pause", json={"reason": "checking"})
        allowed = admin.post("/v1/lanes/lead-sync/canary", json={"batch": "canary-1", "limit": 1})
    with api.client("sync-bot") as bot:
        applied = bot.post(
            "/v1/apply",
            json={
                "system": "crm",
                "batch": "canary-1",
                "workflow": "lead-sync",
                "changes": [change],
            },
        )
    assert allowed.status_code == 200 and allowed.json()["canary"]["batch"] == "canary-1"
    assert applied.status_code == 200, applied.text
    assert api.stage("2") == "mql"


def test_lane_routes_refuse_other_workflows_and_missing_scopes(api):
    with api.client("sync-bot") as bot:
        other_pause = bot.post("/v1/lanes/cleanup/pause", json={"reason": "x"})
        other_read = bot.get("/v1/lanes/cleanup")
        enable = bot.post("/v1/lanes/lead-sync/enable", json={"reason": "x"})
        listed = bot.get("/v1/lanes").json()
    with api.client("lead-admin") as lead_admin:
        other_enable = lead_admin.post("/v1/lanes/cleanup/enable", json={"reason": "x"})
        other_canary = lead_admin.post("/v1/lanes/cleanup/canary", json={"batch": "b", "limit": 1})
    with api.client("reader") as reader:
        reader_pause = reader.post("/v1/lanes/lead-sync/pause", json={"reason": "x"})
    with api.client("admin") as admin:
        admin.post("/v1/lanes/cleanup/pause", json={"reason": "x"})
        everything = admin.get("/v1/lanes").json()
    assert (other_pause.status_code, other_read.status_code) == (403, 403)
    assert other_pause.json()["field"] == "path.workflow"
    assert enable.status_code == 403 and "this needs 'admin'" in enable.json()["message"]
    assert (other_enable.status_code, other_canary.status_code) == (403, 403)
    assert reader_pause.status_code == 403
    assert [lane["workflow"] for lane in everything] == ["cleanup"]
    assert listed == []  # sync-bot sees only lead-sync's lane, which holds nothing yet


def test_a_pause_sent_again_with_its_key_is_replayed(api):
    with api.client("admin", **{"Idempotency-Key": "pause-1"}) as admin:
        first = admin.post("/v1/lanes/lead-sync/pause", json={"reason": "x"})
        second = admin.post("/v1/lanes/lead-sync/pause", json={"reason": "x"})
        other = admin.post("/v1/lanes/lead-sync/pause", json={"reason": "y"})
    assert first.json() == second.json() and first.json()["paused_now"] is True
    assert second.headers["Idempotent-Replayed"] == "true"
    assert (other.status_code, other.json()["key"]) == (422, "pause-1")


def _address(text):
    from ledger import Address

    return Address.parse(text)


def test_a_correction_the_crm_refuses_answers_409_with_the_refused_record(api):
    api.edit("7", "customer")
    api.edit("8", "customer")
    with contextlib.closing(sqlite3.connect(api.crm)) as db:
        db.execute(
            "CREATE TRIGGER frozen BEFORE UPDATE ON contacts WHEN OLD.id = '8' "
            "BEGIN SELECT RAISE(ABORT, 'contact 8 is frozen'); END"
        )
        db.commit()
    with api.client("admin") as client:
        response = client.post("/v1/reconcile/apply", json={**CHECK, "policy": "ledger"})
    assert response.status_code == 409, response.text
    done = response.json()
    assert done["error"] == "refused" and done["refused_total"] == 1
    assert [r["entity"] for r in done["refused"]] == ["crm/contacts/8"]
    assert (api.stage("7"), api.stage("8")) == ("lead", "customer")
    assert done["verification"]["drifted"] == 1


def test_the_golden_paths_end_reconcile_the_outside_edit_then_verify(api):
    """After a batch over HTTP left contact 7 edited outside the ledger: check finds it,
    apply under policy ledger corrects it, the check after is clean, the history verifies."""
    api.edit("7", "customer")
    change = {"entity": "crm/contacts/3", "op": "update", "set": {"stage": "mql"}}
    with api.client("sync-bot") as bot:
        batch = {"system": "crm", "batch": "run-1", "workflow": "lead-sync", "changes": [change]}
        assert bot.post("/v1/apply", json=batch).status_code == 200
    with api.client("admin") as admin:
        found = admin.post("/v1/reconcile/check", json=CHECK).json()
        fixed = admin.post("/v1/reconcile/apply", json={**CHECK, "policy": "ledger"})
        after = admin.post("/v1/reconcile/check", json=CHECK).json()
        verified = admin.post("/v1/verify")
    assert [d["key"] for d in found["drifts"]] == ["7"]
    assert fixed.status_code == 200 and fixed.json()["counts"] == {"applied": 1}
    assert (api.stage("3"), api.stage("7")) == ("mql", "lead")
    assert after["clean"] is True and after["recorded"]["drifted"] == 0
    assert verified.status_code == 200 and verified.json()["ok"] is True
