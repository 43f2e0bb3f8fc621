"""`POST /v1/apply` asks the workflow's lane as `ledger apply` does: a stop trigger tripping
mid-run answers 423 with the run's summary, the trigger and (``on_trip = "plan-rollback"``)
the rollback it planned and saved; later applies of the workflow answer 423 with the pause's
reason, nothing written."""

from __future__ import annotations

LANE = """
[lanes.lead-sync]
on_trip = "plan-rollback"

[lanes.lead-sync.triggers]
creates = { more_than = 100 }
"""


def creates(keys):
    return [
        {"entity": f"crm/contacts/n{k:04d}", "op": "create", "set": {"stage": "lead", "owner": "x"}}
        for k in keys
    ]


def body(batch, keys):
    return {"system": "crm", "batch": batch, "workflow": "lead-sync", "changes": creates(keys)}


def test_a_trip_mid_run_answers_423_with_the_run_the_trigger_and_the_saved_plan(api):
    api.config.write_text(api.config.read_text() + LANE)
    with api.client("applier") as client:
        stopped = client.post("/v1/apply", json=body("run-1", range(1200)))
    assert stopped.status_code == 423, stopped.text
    answer = stopped.json()
    assert (answer["error"], answer["workflow"], answer["trigger"]) == (
        "paused",
        "lead-sync",
        "creates",
    )
    assert answer["stopped"] == "tripped"
    assert answer["counts"]["applied"] == 500 and answer["left"] == 700  # the tripping chunk
    assert "paused by stop trigger creates" in answer["message"]
    assert api.stage("n0499") == "lead" and api.stage("n0500") is None  # nothing further
    plan = answer["rollback_plan"]
    saved = api.config.parent / "rollback-plans" / f"rollback-{plan['plan']}.plan"
    assert plan["path"] == str(saved) and saved.is_file()
    with api.client("reader") as reader:
        read = reader.get(plan["links"]["plan"]).json()
    assert read["counts"]["compensations"] == 500 and read["kinds"] == {"delete": 500}
    assert read["status"] == "not applied"


def test_later_applies_of_a_paused_workflow_answer_423_with_the_pauses_reason(api):
    api.config.write_text(api.config.read_text() + LANE)
    with api.client("applier") as client:
        assert client.post("/v1/apply", json=body("run-1", range(600))).status_code == 423
        later = client.post("/v1/apply", json=body("run-2", range(900, 905)))
        keyed = client.post(
            "/v1/apply", json=body("run-2", range(900, 905)), headers={"Idempotency-Key": "r2"}
        )
    assert later.status_code == 423 and keyed.status_code == 423
    refused = later.json()
    assert (refused["error"], refused["trigger"], refused["paused_by"]) == (
        "paused",
        "creates",
        "stop trigger creates",
    )
    assert "500 creates in this run, more than 100" in refused["reason"]
    assert api.stage("n0900") is None
    assert "run-2" not in {b.name for b in api.ledger.batches()}  # nothing recorded


def test_a_plan_rollback_lanes_trip_plan_is_applied_over_http(api):
    api.config.write_text(api.config.read_text() + LANE)
    with api.client("applier") as client:
        plan = client.post("/v1/apply", json=body("run-1", range(600))).json()["rollback_plan"]
    with api.client("roller") as roller:
        applied = roller.post(plan["links"]["apply"])
    assert applied.status_code == 200, applied.text
    assert applied.json()["counts"] == {"deleted": 500}
    assert api.stage("n0000") is None and api.stage("1") == "lead"


def test_a_run_stopped_by_its_trip_is_the_answer_kept_for_its_idempotency_key(api):
    api.config.write_text(api.config.read_text() + LANE)
    keyed = {"Idempotency-Key": "run-1"}
    with api.client("applier") as client:
        stopped = client.post("/v1/apply", json=body("run-1", range(150)), headers=keyed)
        again = client.post("/v1/apply", json=body("run-1", range(150)), headers=keyed)
    assert stopped.status_code == 423 and stopped.json()["left"] == 0  # tripped in its last chunk
    assert stopped.json()["counts"]["applied"] == 150 and stopped.json()["trigger"] == "creates"
    assert again.status_code == 423 and again.content == stopped.content
    assert again.headers["Idempotent-Replayed"] == "true"
