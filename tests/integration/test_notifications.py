"""Notices read from the ledger's events and delivered to notifiers: a real webhook receiver on
loopback (signatures, retries, a server down), a command, the log, and delivery state recorded
as events (resumable, at least once, never twice at the same time)."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from notice_server import NoticeServer

from ledger import (
    ConfigurationError,
    Ledger,
    deliver_notices,
    open_ledger,
)
from ledger.lane_control import allow_canary, approve_rollback, pause_lane, trip_lane
from ledger.lanes import LaneConfig
from ledger.notify import Delivery, delivery_state, read_notices
from ledger.notify.command import Command
from ledger.notify.log import LogNotifier
from ledger.notify.webhook import Webhook
from ledger.triggers import Trip

SECRET = b"s3cret-for-tests"
LANES = {"lead-sync": LaneConfig("lead-sync", notify=("ops",), systems=("crm",))}


def webhook(server: NoticeServer, **options: object) -> Webhook:
    return Webhook("ops", server.url, SECRET, **{"timeout": 5.0, "backoff": 0.01, **options})


def test_a_pause_is_posted_signed_with_the_hmac_of_its_body(ledger: Ledger) -> None:
    pause_lane(ledger, "lead-sync", "bad mapping in the CRM sync", "ana")
    with NoticeServer() as server:
        report = deliver_notices(ledger, {"ops": webhook(server)}, LANES)
    assert [sent.notice.kind for sent in report.delivered] == ["lane.paused"]
    (request,) = server.requests
    expected = "sha256=" + hmac.new(SECRET, request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Ledger-Signature"] == expected
    assert int(request.headers["X-Ledger-Timestamp"]) > 0
    notice = json.loads(request.body)
    assert notice["kind"] == "lane.paused"
    assert notice["workflows"] == ["lead-sync"]
    assert notice["details"] == {"actor": "ana", "reason": "bad mapping in the CRM sync"}


def test_a_trip_carries_its_trigger_and_evidence(ledger: Ledger) -> None:
    trip = Trip("deletes", "more than 200 deletes", {"deletes": 250, "limit": 200})
    trip_lane(ledger, "lead-sync", trip, batch="run-7")
    (notice,) = read_notices(ledger, 0, ledger.recorder.max_notification_id(), LANES)
    assert notice.kind == "lane.tripped"
    assert notice.details["trigger"] == "deletes"
    assert notice.details["batch"] == "run-7"
    assert notice.details["evidence"] == {
        "rule": "more than 200 deletes",
        "deletes": 250,
        "limit": 200,
    }


def test_each_lane_event_is_a_notice_of_its_kind(ledger: Ledger) -> None:
    pause_lane(ledger, "lead-sync", "checking", "ana")
    allow_canary(ledger, "lead-sync", "ana", "canary-1", 10)
    approve_rollback(ledger, "lead-sync", "p1", "seal", planner="ana", approver="bo")
    kinds = [n.kind for n in read_notices(ledger, 0, ledger.recorder.max_notification_id(), LANES)]
    assert kinds == ["lane.paused", "lane.canary_allowed", "rollback.approved"]


def test_a_server_failing_twice_then_answering_gets_the_notice_once(ledger: Ledger) -> None:
    pause_lane(ledger, "lead-sync", "checking", "ana")
    with NoticeServer() as server:
        server.fail_next(2, 503)
        report = deliver_notices(ledger, {"ops": webhook(server, retries=3)}, LANES)
    assert server.answered == [503, 503, 200]
    assert len(server.requests) == 1
    assert report.delivered[0].attempts == 3
    assert report.clean


def test_a_server_down_is_a_recorded_failure_and_the_pause_stands(ledger: Ledger) -> None:
    with NoticeServer() as server:
        url = server.url
    down = Webhook("ops", url, SECRET, timeout=1.0, retries=2, backoff=0.01)
    pause_lane(ledger, "lead-sync", "checking", "ana")
    report = deliver_notices(ledger, {"ops": down}, LANES)
    (failure,) = report.failures
    assert failure.notice.kind == "lane.paused"
    assert failure.attempts == 3
    state = delivery_state(ledger, "ops")
    assert state is not None and state.failing == failure.notice.position
    assert state.last_error == failure.error and state.position < failure.notice.position
    from ledger.lane_control import lane

    assert lane(ledger, "lead-sync").state == "paused"
    again = deliver_notices(ledger, {"ops": down}, LANES)
    assert again.failures[0].attempts == 6  # counted across deliveries
    with NoticeServer() as server:
        later = Webhook("ops", server.url, SECRET, backoff=0.01)
        report = deliver_notices(ledger, {"ops": later}, LANES)
    assert [s.notice.id for s in report.delivered] == [failure.notice.id]
    assert delivery_state(ledger, "ops").failing is None


def test_a_refusal_is_not_retried(ledger: Ledger) -> None:
    pause_lane(ledger, "lead-sync", "checking", "ana")
    with NoticeServer() as server:
        server.fail_next(1, 403)
        report = deliver_notices(ledger, {"ops": webhook(server)}, LANES)
    assert server.answered == [403]
    assert "403" in report.failures[0].error and report.failures[0].attempts == 1


def test_delivery_resumes_where_it_stopped_and_never_sends_twice(ledger: Ledger) -> None:
    pause_lane(ledger, "lead-sync", "first", "ana")
    with NoticeServer() as server:
        deliver_notices(ledger, {"ops": webhook(server)}, LANES)
        deliver_notices(ledger, {"ops": webhook(server)}, LANES)
        approve_rollback(ledger, "lead-sync", "p1", "seal", planner="ana", approver="bo")
        deliver_notices(ledger, {"ops": webhook(server)}, LANES)
    kinds = [json.loads(r.body)["kind"] for r in server.requests]
    assert kinds == ["lane.paused", "rollback.approved"]


def test_only_the_lanes_that_name_a_notifier_reach_it(ledger: Ledger) -> None:
    lanes = {**LANES, "billing": LaneConfig("billing")}
    pause_lane(ledger, "billing", "not told", "ana")
    with NoticeServer() as server:
        report = deliver_notices(ledger, {"ops": webhook(server)}, lanes)
    assert report.delivered == [] and server.requests == []


def test_a_lane_naming_an_unknown_notifier_is_refused_naming_it(ledger: Ledger) -> None:
    lanes = {"lead-sync": LaneConfig("lead-sync", notify=("pager",))}
    with pytest.raises(ConfigurationError, match=r"lanes.lead-sync.notify names 'pager'"):
        deliver_notices(ledger, {}, lanes)


def test_a_command_gets_the_notice_on_stdin_and_a_nonzero_exit_fails(
    ledger: Ledger, tmp_path
) -> None:
    out = tmp_path / "notice.json"
    script = f"import sys, pathlib; pathlib.Path({str(out)!r}).write_bytes(sys.stdin.buffer.read())"
    pause_lane(ledger, "lead-sync", "checking", "ana")
    failing = Command("ops", (sys.executable, "-c", "import sys; sys.exit('no pager today')"))
    (failure,) = deliver_notices(ledger, {"ops": failing}, LANES).failures
    assert "exited with 1: no pager today" in failure.error
    working = Command("ops", (sys.executable, "-c", script))
    assert len(deliver_notices(ledger, {"ops": working}, LANES).delivered) == 1
    assert json.loads(out.read_bytes())["kind"] == "lane.paused"


def test_the_log_notifier_writes_one_structured_line(ledger: Ledger, caplog) -> None:
    pause_lane(ledger, "lead-sync", "checking", "ana")
    with caplog.at_level("INFO", logger="ledger"):
        deliver_notices(ledger, {"ops": LogNotifier("ops")}, LANES)
    (record,) = [r for r in caplog.records if r.name == "ledger.notice"]
    assert record.msg["event"] == "lane.paused"
    assert record.msg["workflow"] == "lead-sync"


def test_a_claim_held_by_another_process_is_left_alone_until_it_expires(
    ledger: Ledger,
) -> None:
    pause_lane(ledger, "lead-sync", "checking", "ana")
    state = Delivery.start("ops")
    until = datetime.now(UTC) + timedelta(minutes=5)
    state.trigger_event(Delivery.Claimed, holder="other:1", upto=99, until=until)
    ledger.save(state)
    with NoticeServer() as server:
        report = deliver_notices(ledger, {"ops": webhook(server)}, LANES)
        assert report.busy == ["ops"] and server.requests == []
        with freeze_time(until + timedelta(seconds=1)):
            report = deliver_notices(ledger, {"ops": webhook(server)}, LANES)
    assert len(report.delivered) == 1


def test_two_deliveries_racing_for_the_claim_send_once(db_url: str) -> None:
    first, second = open_ledger(db_url), open_ledger(db_url)
    pause_lane(first, "lead-sync", "checking", "ana")
    with NoticeServer() as server:
        server.hold()
        import threading

        done: list[object] = []
        worker = threading.Thread(
            target=lambda: done.append(deliver_notices(first, {"ops": webhook(server)}, LANES))
        )
        worker.start()
        assert server.entered.wait(10)  # the first delivery is mid-request
        report = deliver_notices(second, {"ops": webhook(server)}, LANES)
        server.release()
        worker.join(10)
    assert report.busy == ["ops"] and report.delivered == []
    assert len(server.requests) == 1
    first.close()
    second.close()
