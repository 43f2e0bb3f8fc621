"""`ledger token` and `ledger serve` as an operator runs them: a token created on the command
line is accepted by a server of two worker processes, an Idempotency-Key is shared by both,
and a revocation on the command line holds in both at the next request."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fixtures.api import crm

LEDGER = [sys.executable, "-m", "ledger"]


def ledger(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LEDGER, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def workspace(tmp_path: Path) -> dict[str, str]:
    _, config = crm(tmp_path)
    env = {**os.environ, "LEDGER_DB": str(tmp_path / "ledger.db"), "LEDGER_CONFIG": str(config)}
    assert ledger("init", env=env).returncode == 0
    return env


def test_token_create_list_and_revoke(workspace):
    created = ledger(
        "token",
        "create",
        "zapier",
        "--scope",
        "read,record",
        "--workflow",
        "lead-sync",
        "--actor",
        "ops",
        "--json",
        env=workspace,
    )
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)
    assert token["secret"].startswith("lt_zapier.") and token["created_by"] == "ops"
    listed = ledger("token", "list", "--json", env=workspace)
    assert "secret" not in listed.stdout and json.loads(listed.stdout)[0]["workflows"] == [
        "lead-sync"
    ]
    again = ledger("token", "create", "zapier", "--scope", "read", env=workspace)
    bad = ledger("token", "create", "other", "--scope", "read,delete", env=workspace)
    assert again.returncode == bad.returncode == 1
    assert "names are never reused" in again.stderr
    assert "scope 'delete' is not one of read, record" in bad.stderr
    revoked = ledger("token", "revoke", "zapier", "--json", env=workspace)
    assert json.loads(revoked.stdout)["revoked_at"] is not None


@pytest.mark.slow
def test_two_workers_share_tokens_keys_and_revocations(workspace):
    secret = json.loads(
        ledger("token", "create", "zap", "--scope", "admin", "--json", env=workspace).stdout
    )["secret"]
    server = subprocess.Popen(
        [*LEDGER, "serve", "--port", "0", "--workers", "2"],
        env=workspace,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url, ready = None, 0
        for line in server.stderr:  # wait until it says where it listens and both workers run
            found = re.search(r"running on (http://\S+)", line)
            url = found.group(1) if found else url
            ready += "Application startup complete" in line
            if url and ready == 2:
                break
        assert url is not None and ready == 2, "ledger serve did not start"
        headers = {"Authorization": f"Bearer {secret}", "Idempotency-Key": "one"}
        change = {
            "entity": "crm/contacts/1",
            "op": "update",
            "set": {"stage": "mql"},
            "before": {"stage": "lead"},
        }

        def post(_: int) -> httpx.Response:
            return httpx.post(f"{url}/v1/actions", json=change, headers=headers, timeout=30)

        assert httpx.get(f"{url}/v1/health").status_code == 200
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(post, range(12)))
        executed = [a for a in answers if "Idempotent-Replayed" not in a.headers and a.is_success]
        assert len(executed) == 1, [
            (a.status_code, a.text[:300]) for a in answers if a.status_code != 409
        ]
        assert {a.status_code for a in answers} <= {201, 409}
        history = ledger("history", "crm/contacts/1", "--json", env=workspace)
        assert [a["actor"] for a in json.loads(history.stdout)] == ["zap"]

        assert ledger("token", "revoke", "zap", env=workspace).returncode == 0
        for _ in range(6):  # whichever worker answers
            refused = httpx.get(f"{url}/v1/batches", headers=headers)
            assert refused.status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_refuses_a_ledger_that_does_not_exist(tmp_path):
    env = {**os.environ, "LEDGER_DB": str(tmp_path / "missing.db")}
    result = ledger("serve", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "ledger init" in result.stderr or "does not exist" in result.stderr
