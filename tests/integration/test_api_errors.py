"""Every error answers one JSON problem body with the status of the one mapping
(ledger/api/errors.py): bad input 422 naming the field's path, 404, 409 with both values,
413 counted while reading, 423 for a paused lane, and never a traceback."""

from __future__ import annotations

import contextlib
import logging
import sqlite3

import pytest
from fixtures.api import serve

from ledger import Address
from ledger.api.errors import problem_of
from ledger.errors import LanePaused
from ledger.lane_control import ensure_open, pause_lane


def recorded(api):
    return [b.name for b in api.ledger.batches() if b.name != "baseline"]


@pytest.mark.parametrize(
    "body, field",
    [
        (
            {
                "changes": [
                    {"entity": "crm/contacts/1", "op": "update", "set": {"stage": "x"}},
                    {"entity": "crm/x/1"},
                ]
            },
            "changes[1].op",
        ),
        (
            {"changes": [{"entity": "crm/contacts/1", "op": "update", "colour": 1}]},
            "changes[0].colour",
        ),
        (
            {
                "changes": [
                    {
                        "entity": "crm/contacts/1",
                        "op": "update",
                        "set": {"stage": {"$decimal": "x"}},
                    }
                ]
            },
            "changes[0].set.stage",
        ),
        ({"entity": "crm contacts", "op": "update"}, "entity"),
        ({"changes": []}, "changes"),
        (
            {"changes": [{"entity": "crm/contacts/1", "op": "delete"}], "keep_open": "yes"},
            "keep_open",
        ),
    ],
)
def test_a_bad_body_is_422_naming_the_field_and_records_nothing(api, body, field):
    with api.client("recorder") as client:
        answer = client.post("/v1/actions", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid"
    assert answer.json()["field"] == field
    assert recorded(api) == []


def test_a_body_that_is_not_json_names_the_body(api):
    with api.client("recorder") as client:
        answer = client.post("/v1/actions", content=b'{"entity": "crm/contacts/1", "op": ')
        duplicate = client.post("/v1/actions", content=b'{"op": "create", "op": "update"}')
    assert answer.status_code == 422 and answer.json()["field"] == "body"
    assert "not valid JSON" in answer.json()["message"]
    assert duplicate.status_code == 422 and "op" in duplicate.json()["message"]


def test_query_errors_are_reshaped_with_their_path(api):
    with api.client("reader") as client:
        limit = client.get("/v1/collections/crm/contacts", params={"limit": 0})
        missing = client.get("/v1/diff", params={"target": "crm/contacts"})
        at = client.get("/v1/records/crm/contacts/1", params={"at": "version:x"})
        cursor = client.get("/v1/collections/crm/contacts", params={"cursor": "nope"})
    assert (limit.status_code, limit.json()["field"]) == (422, "query.limit")
    assert "greater than or equal to 1" in limit.json()["expected"]
    assert (missing.status_code, missing.json()["field"]) == (422, "query.from")
    assert (at.status_code, at.json()["field"]) == (422, "query.at")
    assert (cursor.status_code, cursor.json()["field"]) == (422, "query.cursor")


def test_what_does_not_exist_is_404(api):
    with api.client("reader") as client:
        record = client.get("/v1/records/crm/contacts/999")
        checkpoint = client.get("/v1/records/crm/contacts/1", params={"at": "checkpoint:nope"})
        route = client.get("/v1/nothing-here")
    for answer in (record, checkpoint, route):
        assert answer.status_code == 404 and answer.json()["error"] == "not_found"
    assert "crm/contacts/999 has no recorded actions" in record.json()["message"]


def test_a_change_drafted_from_an_old_value_is_409_with_both_values(api):
    change = {
        "entity": "crm/contacts/1",
        "op": "update",
        "set": {"stage": "sql"},
        "before": {"stage": "mql"},
    }
    with api.client("recorder") as client:
        answer = client.post("/v1/actions", json=change)
    assert answer.status_code == 409
    body = answer.json()
    assert (body["error"], body["field"], body["record"]) == ("stale", "stage", "crm/contacts/1")
    assert (body["expected"], body["actual"]) == ("mql", "lead")


def test_a_body_over_the_limit_is_413_before_it_is_read_whole(small_api):
    big = {
        "changes": [
            {"entity": f"crm/contacts/{n}", "op": "update", "set": {"stage": "x"}}
            for n in range(1, 60)
        ]
    }
    with small_api.client("recorder") as client:
        declared = client.post("/v1/actions", json=big)

        def chunks():  # no Content-Length: counted while reading
            yield b'{"changes": ['
            for _ in range(200):
                yield b'{"entity": "crm/contacts/1", "op": "update", "set": {"stage": "x"}},'
            yield b"]}"

        streamed = client.post("/v1/actions", content=chunks())
    for answer in (declared, streamed):
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"] == "too_large" and answer.json()["expected"] == 2048
    assert recorded(small_api) == []


def test_an_unexpected_failure_is_a_500_with_a_correlation_id_and_no_traceback(api, caplog):
    def broken() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    api.app.add_api_route("/v1/broken", broken)
    with caplog.at_level(logging.ERROR, logger="ledger.api"), api.client("reader") as client:
        answer = client.get("/v1/broken")
    assert answer.status_code == 500
    body = answer.json()
    assert body["error"] == "internal" and body["correlation_id"] in body["message"]
    assert "Traceback" not in answer.text and "secret internals" not in answer.text
    assert body["correlation_id"] in caplog.text and "secret internals" in caplog.text


def test_a_paused_lane_maps_to_423_with_who_when_why(api):
    """A real paused lane and the real gate check: the one mapping answers who, when, why."""
    pause_lane(api.ledger, "lead-sync", "bounce rate over 5%", "ops-oncall")
    with pytest.raises(LanePaused) as paused:
        ensure_open(api.ledger, ["lead-sync"])
    answer = problem_of(paused.value, api.ledger).answer()
    body = __import__("orjson").loads(answer.body)
    assert answer.status == 423
    assert body["error"] == "paused" and body["workflow"] == "lead-sync"
    assert (body["paused_by"], body["reason"], body["trigger"]) == (
        "ops-oncall",
        "bounce rate over 5%",
        None,
    )
    assert body["paused_at"].startswith("20")


def test_a_second_server_on_the_same_ledger_shares_tokens_and_keys(api):
    """What several workers rely on: tokens and Idempotency-Keys live in the ledger."""
    from ledger import open_ledger
    from ledger.api.app import create_app

    change = {"entity": "crm/contacts/4", "op": "update", "set": {"stage": "mql"}}
    other = create_app(str(api.db), str(api.config))
    with serve(other) as url, api.client("recorder", **{"Idempotency-Key": "w"}) as first:
        one = first.post("/v1/actions", json=change)
        first.base_url = url
        two = first.post("/v1/actions", json=change)
    assert two.headers["Idempotent-Replayed"] == "true" and two.content == one.content
    assert open_ledger(str(api.db)).history(Address.parse("crm/contacts/4"))[-1].actor == "recorder"


@pytest.mark.slow  # the SQL adapter waits 30 s for another writer's lock before it gives up
def test_a_locked_target_is_503_with_retry_after_and_the_key_stays_free(api):
    body = {
        "system": "crm",
        "batch": "locked",
        "changes": [{"entity": "crm/contacts/5", "op": "update", "set": {"stage": "mql"}}],
    }
    with contextlib.closing(sqlite3.connect(api.crm, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # someone else is writing to the CRM
        with api.client("applier", **{"Idempotency-Key": "locked"}) as client:
            answer = client.post("/v1/apply", json=body, timeout=120)
        other.execute("ROLLBACK")
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "unavailable" and "locked" in answer.json()["message"]
    assert answer.headers["Retry-After"] == "5" and "Traceback" not in answer.text
    assert api.stage("5") == "lead"
    with api.client("applier", **{"Idempotency-Key": "locked"}) as client:
        again = client.post("/v1/apply", json=body)
    assert again.status_code == 200 and again.json()["counts"]["applied"] == 1
    assert api.stage("5") == "mql"


def test_a_paused_workflow_answers_423_over_http_and_nothing_is_written(api):
    pause_lane(api.ledger, "lead-sync", "bounce rate over 5%", "ops-oncall")
    change = {"entity": "crm/contacts/1", "op": "update", "set": {"stage": "mql"}}
    apply = {"system": "crm", "batch": "b", "workflow": "lead-sync", "changes": [change]}
    keyed = {"json": {**change, "workflow": "lead-sync"}, "headers": {"Idempotency-Key": "k"}}
    with api.client("sync-bot") as client:
        applied = client.post("/v1/apply", json=apply)
        first, again = client.post("/v1/actions", **keyed), client.post("/v1/actions", **keyed)
    assert "Idempotent-Replayed" not in again.headers  # a 423 is not kept: a retry runs again
    for answer in (applied, first, again):
        assert answer.status_code == 423, answer.text
        body = answer.json()
        assert (body["error"], body["workflow"], body["paused_by"], body["reason"]) == (
            "paused",
            "lead-sync",
            "ops-oncall",
            "bounce rate over 5%",
        )
    assert api.stage("1") == "lead"
    assert [b.name for b in api.ledger.batches() if b.name != "baseline"] == []
