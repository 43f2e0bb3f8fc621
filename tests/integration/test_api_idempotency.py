"""Idempotency-Key: the same key and body get the first answer back (not a second execution),
another body under the key is refused naming it, and two requests racing with one key
execute once. Keys live in the ledger's database, so every worker shares them."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from freezegun import freeze_time

from ledger import Address, open_ledger
from ledger.api.errors import Problem
from ledger.api.idempotency import CLAIM_TIMEOUT, IdempotentRequest, request_id, run_once, stored
from ledger.api.models import Answer

CHANGE = {"entity": "crm/contacts/7", "op": "update", "set": {"stage": "mql"}}


def actions_on(api, key):
    history = api.ledger.history(Address.parse(f"crm/contacts/{key}"))
    return [a for a in history if a.batch != "baseline"]


def test_the_same_key_and_body_replay_the_first_answer(api):
    with api.client("recorder", **{"Idempotency-Key": "order-1"}) as client:
        first = client.post("/v1/actions", json=CHANGE)
        again = client.post("/v1/actions", json=CHANGE)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content  # executed again, it would say duplicate: true
    assert again.json()["duplicate"] is False
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(actions_on(api, "7")) == 1


def test_the_same_key_with_another_body_is_refused_naming_the_key(api):
    with api.client("recorder", **{"Idempotency-Key": "order-2"}) as client:
        assert client.post("/v1/actions", json=CHANGE).status_code == 201
        other = client.post("/v1/actions", json={**CHANGE, "set": {"stage": "customer"}})
    assert other.status_code == 422
    assert other.json()["key"] == "order-2"
    assert other.json()["field"] == "header.Idempotency-Key"
    assert "order-2" in other.json()["message"]
    assert [a.after for a in actions_on(api, "7")] == [{"stage": "mql"}]


def test_keys_are_per_token(api):
    with api.client("recorder", **{"Idempotency-Key": "k"}) as one:
        assert one.post("/v1/actions", json=CHANGE).status_code == 201
    with api.client("admin", **{"Idempotency-Key": "k"}) as other:
        answer = other.post("/v1/actions", json={**CHANGE, "set": {"stage": "customer"}})
    assert answer.status_code == 201 and "Idempotent-Replayed" not in answer.headers


def test_an_answer_of_a_refusal_is_replayed_too(api):
    stale = {**CHANGE, "before": {"stage": "customer"}}  # the ledger knows 'lead'
    with api.client("recorder", **{"Idempotency-Key": "stale-1"}) as client:
        first = client.post("/v1/actions", json=stale)
        again = client.post("/v1/actions", json=stale)
    assert first.status_code == again.status_code == 409
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.json()["expected"] == "customer" and first.json()["actual"] == "lead"


def test_concurrent_requests_with_one_key_execute_once(api):
    def post(_):
        with api.client("recorder", **{"Idempotency-Key": "race"}) as client:
            return client.post("/v1/actions", json={"changes": [CHANGE], "keep_open": True})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    executed = [
        a for a in answers if a.status_code == 201 and "Idempotent-Replayed" not in a.headers
    ]
    assert len(executed) == 1
    for answer in answers:
        assert answer.status_code in (201, 409), answer.text
        if answer.status_code == 201:
            assert answer.content == executed[0].content
        else:
            assert answer.json()["error"] == "concurrency"
    assert len(actions_on(api, "7")) == 1
    assert stored(api.ledger, "recorder", "race").answer.status == 201


@pytest.fixture
def ledger(tmp_path):
    app = open_ledger(str(tmp_path / "ledger.db"), create=True)
    yield app
    app.close()


def test_a_request_still_running_holds_its_key_against_a_second(ledger):
    """The first claimant runs until the second has been turned away: no timing involved."""
    turned_away = threading.Event()
    runs = []

    def slow() -> Answer:
        runs.append("first")
        assert turned_away.wait(30)
        return Answer(201, b'{"n": 1}')

    first = threading.Thread(target=lambda: runs.append(run_once(ledger, "t", "k", "h", slow)))
    first.start()
    while stored(ledger, "t", "k") is None:  # wait until the first has claimed the key
        first.join(0.005)
    with pytest.raises(Problem) as second:
        run_once(ledger, "t", "k", "h", lambda: runs.append("second") or Answer(201, b"{}"))
    turned_away.set()
    first.join()
    assert second.value.status == 409 and second.value.kind == "concurrency"
    assert runs == ["first", (Answer(201, b'{"n": 1}'), False)]
    assert run_once(ledger, "t", "k", "h", slow) == (Answer(201, b'{"n": 1}'), True)


@pytest.mark.parametrize(
    "status, kind", [(423, "paused"), (503, "unavailable"), (409, "concurrency")]
)
def test_an_answer_a_retry_may_change_frees_the_key(ledger, status, kind):
    refused = Answer(status, orjson.dumps({"error": kind}))
    assert run_once(ledger, "t", "k", "h", lambda: refused) == (refused, False)
    done = Answer(201, b"{}")
    assert run_once(ledger, "t", "k", "h", lambda: done) == (done, False)
    assert run_once(ledger, "t", "k", "h", lambda: refused) == (done, True)


def test_a_failure_inside_frees_the_key(ledger):
    def broken() -> Answer:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        run_once(ledger, "t", "k", "h", broken)
    assert run_once(ledger, "t", "k", "h", lambda: Answer(200, b"{}")) == (
        Answer(200, b"{}"),
        False,
    )


def test_a_claim_left_by_a_worker_that_died_is_taken_over_after_the_timeout(ledger):
    with freeze_time("2026-11-28T09:00:00Z") as clock:
        died = IdempotentRequest._create(
            IdempotentRequest.Claimed,
            id=request_id("t", "k"),
            token="t",
            key="k",
            request_hash="h",
        )
        ledger.save(died)  # claimed, never answered: the worker was killed
        clock.tick(60)
        with pytest.raises(Problem):
            run_once(ledger, "t", "k", "h", lambda: Answer(201, b"{}"))
        clock.tick(CLAIM_TIMEOUT.total_seconds())
        assert run_once(ledger, "t", "k", "h", lambda: Answer(201, b"{}")) == (
            Answer(201, b"{}"),
            False,
        )
