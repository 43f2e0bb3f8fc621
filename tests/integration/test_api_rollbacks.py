"""Rollbacks over HTTP, as an operator's tools drive them: a batch applied to the CRM, its
rollback planned (saved and recorded with the token as planner), read page by page, approved
by a second token on a two-person lane, applied exactly once (conflicts listed and left as
they are in the CRM), its status read back from what the ledger recorded."""

from __future__ import annotations

import pytest
from fixtures.api import served_api
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from ledger import Address, create_token, lane_view, rollback_plans

BATCH = "lead-sync-1"
TWO_PERSONS = '\n[lanes.lead-sync]\napproval = "two-person"\n'


def apply_batch(api, keys=range(1, 11), batch=BATCH):
    changes = [
        {"entity": f"crm/contacts/{k}", "op": "update", "set": {"stage": "mql"}} for k in keys
    ]
    body = {"system": "crm", "batch": batch, "workflow": "lead-sync", "changes": changes}
    with api.client("admin") as client:
        response = client.post("/v1/apply", json=body)
    assert response.status_code == 200, response.text


def plan(api, token="roller", **scope):
    with api.client(token) as client:
        return client.post("/v1/rollbacks", json={"batches": [BATCH], **scope})


def rollback_actions(api, key):
    history = api.ledger.history(Address.parse(f"crm/contacts/{key}"))
    return [a for a in history if a.batch.startswith("rollback-")]


def limited(api, name, **limits):
    """A token of the caller's making: rollback and read, limited to workflows or systems."""
    secret = create_token(api.ledger, name, ["rollback", "read"], actor="setup", **limits).secret
    return api.client(Authorization=f"Bearer {secret}")


def test_a_rollback_is_planned_saved_and_recorded_with_the_token_as_planner(api):
    apply_batch(api)
    api.edit("3", "customer")  # someone edits contact 3 in the CRM since the batch
    response = plan(api)
    assert response.status_code == 201, response.text
    planned = response.json()
    assert planned["planner"] == "roller" and planned["workflows"] == ["lead-sync"]
    assert planned["counts"]["compensations"] == 9 and planned["counts"]["conflicts"] == 1
    assert planned["kinds"] == {"restore": 9}
    (conflict,) = planned["conflicts"]
    assert conflict["entity"] == "crm/contacts/3" and conflict["fields"] == ["stage"]
    assert "compensations" not in planned["links"]["plan"]  # paged, not inlined
    saved = api.config.parent / "rollback-plans" / f"rollback-{planned['plan']}.plan"
    assert planned["saved"]["path"] == str(saved) and saved.is_file()
    assert planned["saved"]["seal"] == planned["seal"]
    with api.client("reader") as client:
        (listed,) = client.get("/v1/rollbacks").json()
        read = client.get(planned["links"]["plan"]).json()
        runbook = client.get(planned["links"]["runbook"])
    assert (listed["plan"], listed["planner"], listed["status"]) == (
        planned["plan"],
        "roller",
        "not applied",
    )
    assert read["status"] == "not applied" and read["approved_by"] == []
    assert read["conflicts"] == planned["conflicts"]
    assert runbook.headers["content-type"].startswith("text/markdown")
    assert runbook.text.startswith(f"# Rollback {planned['plan']}")
    assert api.stage("1") == "mql"  # planning writes nothing


def test_a_plans_compensations_are_read_page_by_page(api):
    apply_batch(api)
    planned = plan(api).json()
    entities, cursor, pages = [], None, 0
    with api.client("reader") as client:
        while True:
            params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
            page = client.get(planned["links"]["compensations"], params=params).json()
            entities += [c["entity"] for c in page["compensations"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        bad = client.get(planned["links"]["compensations"], params={"cursor": "nonsense"})
    assert pages == 3
    assert sorted(entities) == sorted(f"crm/contacts/{k}" for k in range(1, 11))
    assert bad.status_code == 422 and bad.json()["field"] == "query.cursor"


def test_approved_by_a_second_token_the_plan_is_applied_once_and_verified(api):
    api.config.write_text(api.config.read_text() + TWO_PERSONS)
    apply_batch(api)
    api.edit("3", "customer")
    planned = plan(api).json()
    with api.client("roller") as roller:
        unapproved = roller.post(planned["links"]["apply"])
    assert unapproved.status_code == 409 and unapproved.json()["error"] == "conflict"
    assert "nothing was applied" in unapproved.json()["message"]
    assert api.stage("1") == "mql" and rollback_actions(api, "1") == []  # nothing written
    with api.client("approver") as approver:
        approved = approver.post(planned["links"]["approvals"], json={"seal": planned["seal"]})
    assert approved.status_code == 201, approved.text
    assert approved.json()["approver"] == "approver"
    with api.client("roller") as roller:
        applied = roller.post(planned["links"]["apply"])
        again = roller.post(planned["links"]["apply"])
    assert applied.status_code == 200, applied.text
    report = applied.json()
    assert report["counts"] == {"restored": 9, "skipped": 1}
    assert report["needs_attention"] == ["crm/contacts/3"]
    assert report["conflicts"][0]["entity"] == "crm/contacts/3"
    assert report["verification"]["clean"] is True
    assert [api.stage(str(k)) for k in range(1, 11)] == ["lead"] * 2 + ["customer"] + ["lead"] * 7
    assert again.status_code == 200 and again.json()["already_applied"] is True
    assert [len(rollback_actions(api, str(k))) for k in (1, 3, 10)] == [1, 0, 1]  # once
    with api.client("reader") as client:
        read = client.get(planned["links"]["plan"]).json()
    assert read["status"] == "verified" and read["approved_by"] == ["approver"]
    assert read["verification"]["checked"] == 9


def test_a_token_cannot_approve_its_own_plan(api):
    api.config.write_text(api.config.read_text() + TWO_PERSONS)
    apply_batch(api)
    planned = plan(api, token="admin").json()
    with api.client("admin") as admin:
        refused = admin.post(planned["links"]["approvals"])
        unapproved = admin.post(planned["links"]["apply"])
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert "planned by admin; someone else must approve it" in refused.json()["message"]
    assert lane_view(api.ledger, "lead-sync").approvals == ()
    assert unapproved.status_code == 409 and api.stage("1") == "mql"


def test_an_approval_of_another_content_than_was_read_is_refused(api):
    api.config.write_text(api.config.read_text() + TWO_PERSONS)
    apply_batch(api)
    planned = plan(api).json()
    with api.client("approver") as approver:
        refused = approver.post(planned["links"]["approvals"], json={"seal": "sha256:other"})
    assert refused.status_code == 409 and refused.json()["field"] == "seal"
    assert lane_view(api.ledger, "lead-sync").approvals == ()


def test_an_idempotency_key_replays_the_apply_answer(api):
    apply_batch(api)
    planned = plan(api).json()
    with api.client("roller", **{"Idempotency-Key": "undo-1"}) as roller:
        first = roller.post(planned["links"]["apply"])
        again = roller.post(planned["links"]["apply"])
    assert first.status_code == 200, first.text
    assert again.content == first.content and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["already_applied"] is False  # the first answer, not a second run
    assert len(rollback_actions(api, "1")) == 1


def test_an_apply_interrupted_half_way_is_finished_by_posting_it_again(api, monkeypatch):
    apply_batch(api)
    planned = plan(api).json()
    monkeypatch.setattr("ledger.rollback.execution.APPLY_CHUNK", 4)  # three target writes
    updates = []

    def fail_the_second_chunk(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE contacts"):
            updates.append(statement)
            if len(updates) == 2:
                raise sa_exc.OperationalError(statement, parameters, Exception("disk I/O error"))

    event.listen(Engine, "before_cursor_execute", fail_the_second_chunk)
    try:
        with api.client("roller") as roller:
            interrupted = roller.post(planned["links"]["apply"])
            with api.client("reader") as reader:
                half = reader.get(planned["links"]["plan"]).json()
            finished = roller.post(planned["links"]["apply"])
    finally:
        event.remove(Engine, "before_cursor_execute", fail_the_second_chunk)
    assert interrupted.status_code == 503, interrupted.text
    assert half["status"] == "applying"
    assert finished.status_code == 200, finished.text
    assert [api.stage(str(k)) for k in range(1, 11)] == ["lead"] * 10
    assert all(len(rollback_actions(api, str(k))) == 1 for k in range(1, 11))  # never twice
    with api.client("reader") as reader:
        assert reader.get(planned["links"]["plan"]).json()["status"] == "verified"


def test_a_token_limited_to_a_workflow_plans_only_a_scope_naming_it(api):
    apply_batch(api)
    with limited(api, "lead-roller", workflows=["lead-sync"]) as client:
        unnamed = client.post("/v1/rollbacks", json={"batches": [BATCH]})
        other = client.post("/v1/rollbacks", json={"batches": [BATCH], "workflow": "cleanup"})
        own = client.post("/v1/rollbacks", json={"batches": [BATCH], "workflow": "lead-sync"})
    assert (unnamed.status_code, other.status_code, own.status_code) == (403, 403, 201)
    assert "name one of them in 'workflow'" in unnamed.json()["message"]
    assert [p.saved.planner for p in _plans(api)] == ["lead-roller"]


def test_a_token_limited_to_other_systems_cannot_plan_or_apply_a_rollback_of_the_crm(api):
    apply_batch(api)
    planned = plan(api).json()
    with limited(api, "erp-roller", systems=["erp"]) as client:
        planning = client.post("/v1/rollbacks", json={"batches": [BATCH]})
        applying = client.post(planned["links"]["apply"])
        reading = client.get(planned["links"]["compensations"])
    assert (planning.status_code, applying.status_code, reading.status_code) == (403, 403, 403)
    assert "limited to systems erp, not 'crm'" in planning.json()["message"]
    assert len(_plans(api)) == 1 and api.stage("1") == "mql"


@pytest.mark.parametrize("token", ["reader", "approver", "applier"])
def test_viewing_approving_and_reverting_are_separate_permissions(api, token):
    apply_batch(api)
    planned = plan(api).json()
    with api.client(token) as client:
        planning = client.post("/v1/rollbacks", json={"batches": [BATCH]})
        applying = client.post(planned["links"]["apply"])
    assert (planning.status_code, applying.status_code) == (403, 403)
    assert api.stage("1") == "mql"


def test_an_unknown_plan_is_404_and_a_bad_scope_names_its_field(api):
    with api.client("roller") as client:
        missing = client.post("/v1/rollbacks/0123456789ab/apply")
        scope = client.post("/v1/rollbacks", json={"collection": "contacts", "since": "1"})
        policy = client.post("/v1/rollbacks", json={"batches": [BATCH], "policy": "yolo"})
        unknown = client.post("/v1/rollbacks", json={"batch": BATCH})
    assert missing.status_code == 404
    assert (scope.status_code, scope.json()["field"]) == (422, "collection")
    assert (policy.status_code, policy.json()["field"]) == (422, "policy")
    assert (unknown.status_code, unknown.json()["field"]) == (422, "batch")


def test_a_rolled_back_batch_is_replayed_by_plan_then_apply(api):
    apply_batch(api)
    planned = plan(api).json()
    with api.client("roller") as roller:
        assert roller.post(planned["links"]["apply"]).status_code == 200
        check = roller.post("/v1/replays", json={"mode": "check", "batches": [BATCH]})
        replay = roller.post("/v1/replays", json={"mode": "plan", "batches": [BATCH]})
        mixed = roller.post(
            "/v1/replays",
            json={"mode": "apply", "plan": replay.json()["plan"], "batches": [BATCH]},
        )
        applied = roller.post("/v1/replays", json={"mode": "apply", "plan": replay.json()["plan"]})
    assert check.status_code == 200 and check.json()["clean"] is True
    assert check.json()["reversible"] == {"restore": 10}
    assert replay.status_code == 201 and replay.json()["verb"] == "replay"
    assert mixed.status_code == 422 and mixed.json()["field"] == "batches"
    assert applied.status_code == 200, applied.text
    assert applied.json()["counts"] == {"restored": 10}
    assert [api.stage(str(k)) for k in range(1, 11)] == ["mql"] * 10


def _plans(api):
    return rollback_plans(api.ledger)


def test_plans_are_saved_in_the_servers_plans_directory(tmp_path):
    for api in served_api(tmp_path, plans_dir=tmp_path / "plans"):
        apply_batch(api)
        planned = plan(api).json()
        assert planned["saved"]["path"] == str(tmp_path / "plans" / f"{planned['batch']}.plan")
        assert not (tmp_path / "rollback-plans").exists()
