"""The HTTP API under load (issue 19): ``ledger serve --workers 4``, a real subprocess, over one
PostgreSQL ledger, 1,000 record requests from 16 concurrent clients on loopback, a tenth of
them repeating an earlier Idempotency-Key (16 copies of one key racing each other, others
racing their first copy or coming later). Every key executes once, every copy gets the first
answer byte for byte, and the ledger holds one action per key: nothing lost, nothing twice.
Bench row 12 runs the same harness (``tests/api_load.py``) at 20,000 requests."""

from __future__ import annotations

import os
import sys

import pytest
from api_load import (
    RECORD_PATH,
    check_answers,
    check_ledger,
    count_actions,
    drive,
    plan,
    resend_refused,
    served,
)

from ledger import create_token, open_ledger

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REQUESTS, CLIENTS, WORKERS = 1_000, 16, 4


def test_four_workers_record_each_key_once_under_load(postgres_url):
    ledger = open_ledger(postgres_url, create=True)
    try:
        secret = create_token(ledger, "load-bot", ["record"], actor="setup").secret
        before = count_actions(postgres_url)
        requests = plan(REQUESTS, racing=CLIENTS)
        distinct = {planned.key for planned in requests}
        assert len(distinct) == 900
        assert [planned.key for planned in requests[:CLIENTS]] == [requests[0].key] * CLIENTS
        command = [sys.executable, "-m", "ledger", "serve", "--db", postgres_url]
        headers = {"Authorization": f"Bearer {secret}"}
        with served([*command, "--workers", str(WORKERS)], dict(os.environ), WORKERS) as server:
            answers, _ = drive(server.url, RECORD_PATH, headers, requests, CLIENTS)
            checked = check_answers(requests, answers)  # no 5xx; each key executed once
            resend_refused(server.url, RECORD_PATH, headers, requests, checked)

        assert not [a for a in answers if a.status >= 500]
        assert checked["distinct"] == len(distinct)
        assert checked["replayed"] + len(checked["refused"]) == REQUESTS - len(distinct)
        first = checked["first"]
        for answer in answers:  # every copy of a key: the first answer, byte for byte
            if answer.status != 409:
                assert answer.body == first[requests[answer.index].key].body
        assert count_actions(postgres_url) - before == len(distinct)
        assert check_ledger(ledger, requests) == len(distinct)
    finally:
        ledger.close()
