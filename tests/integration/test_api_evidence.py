"""Receipts, verify, the digest and metrics over HTTP: a proof saved from the API checks
offline with the public key alone, exactly as the CLI's does; a tampered history answers
with what broke; the metrics are `ledger metrics`, parseable and counting what was recorded."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from fixtures.api import serve
from prometheus_client.parser import text_string_to_metric_families

from ledger import open_ledger
from ledger.api.app import create_app
from ledger.cli import main
from ledger.errors import TamperDetected
from ledger.evidence import ledger_public_key
from ledger.integrity import parse_receipt, verify_receipt
from ledger.metrics import metrics_text
from ledger.signing import load_public_key, parse_digest, verify_digest
from ledger.store.keyfile import public_key_path

CHANGE = {"entity": "crm/contacts/1", "op": "update", "set": {"stage": "mql"}}


def applied(api, batch="b1", change=CHANGE):
    with api.client("applier") as client:
        response = client.post(
            "/v1/apply", json={"system": "crm", "batch": batch, "changes": [change]}
        )
    assert response.status_code == 200, response.text
    return response.json()["outcomes"][0]


def test_a_receipts_proof_checks_offline_with_the_public_key_as_the_clis_does(api, tmp_path):
    outcome = applied(api)
    action = f"{outcome['entity']}@{outcome['version']}"
    with api.client("reader") as client:
        found = client.get(f"/v1/receipts/{action}")
        proof = client.get(f"/v1/receipts/{action}/proof")
        by_prefix = client.get(f"/v1/receipts/{found.json()['fingerprint'][:20]}")
    assert found.status_code == 200, found.text
    receipt = found.json()
    assert receipt["what"]["entity"] == "crm/contacts/1"
    assert receipt["change"]["final"] == {"stage": ["lead", "mql"]}
    assert by_prefix.json()["fingerprint"] == receipt["fingerprint"]
    saved = tmp_path / "proof.json"
    saved.write_bytes(proof.content)
    public_key = load_public_key(public_key_path(Path(str(api.db) + ".key")))
    verify_receipt(parse_receipt(saved.read_text()), public_key)  # offline: file and key only
    assert orjson.loads(proof.content) == receipt["proof"]
    cli_proof = tmp_path / "cli-proof.json"
    result = CliRunner().invoke(
        main, ["receipt", action, "--db", str(api.db), "--proof-out", str(cli_proof)]
    )
    assert result.exit_code == 0, result.output
    assert cli_proof.read_bytes() == proof.content


def test_an_altered_proof_does_not_check(api):
    outcome = applied(api)
    with api.client("reader") as client:
        proof = client.get(f"/v1/receipts/{outcome['entity']}@{outcome['version']}/proof").json()
    proof["leaf_hash"] = "00" * 32
    with pytest.raises(TamperDetected):
        verify_receipt(parse_receipt(orjson.dumps(proof)), ledger_public_key(api.ledger))


def test_receipts_of_unknown_actions_and_other_systems_are_refused(api):
    with api.client("admin") as admin:
        erp = admin.post(
            "/v1/actions", json={"entity": "erp/orders/9", "op": "create", "set": {"n": 1}}
        ).json()
    with api.client("crm-reader") as client:
        other_system = client.get(f"/v1/receipts/{erp['fingerprint']}")
        other_proof = client.get("/v1/receipts/erp/orders/9@1/proof")
        own = client.get("/v1/receipts/crm/contacts/1@1")
        unknown = client.get("/v1/receipts/crm/contacts/1@9")
    with api.client("recorder") as client:
        no_read = client.get("/v1/receipts/crm/contacts/1@1")
    assert (other_system.status_code, other_proof.status_code) == (403, 403)
    assert "not 'erp'" in other_system.json()["message"]
    assert own.status_code == 200
    assert unknown.status_code == 404 and "versions 1 to 1" in unknown.json()["message"]
    assert no_read.status_code == 403


def test_verify_a_clean_history_and_extend_a_digest_whose_signature_checks(api):
    with api.client("reader") as client:
        digest = client.get("/v1/digest")
        applied(api)
        report = client.post("/v1/verify", json={"digest": digest.json()})
        bare = client.post("/v1/verify")
    assert digest.status_code == 200
    taken = parse_digest(digest.content)
    verify_digest(taken, ledger_public_key(api.ledger))  # signed by the ledger's key
    assert report.status_code == 200, report.text
    checked = report.json()
    assert checked["ok"] is True and checked["first_break"] is None
    assert checked["digest_size"] == taken.head.size < checked["size"]
    assert bare.status_code == 200 and bare.json()["ok"] is True


def test_a_digest_not_of_this_ledger_is_refused_naming_why(api):
    with api.client("reader") as client:
        digest = client.get("/v1/digest").json()
        digest["root"] = "00" * 32
        refused = client.post("/v1/verify", json={"digest": digest})
        bad_key = client.post("/v1/verify", json={"public_key": "not a key"})
    assert refused.status_code == 409
    assert refused.json()["error"] == "tamper_detected"
    assert (bad_key.status_code, bad_key.json()["field"]) == (422, "public_key")


def test_verify_on_a_tampered_copy_answers_what_broke(api, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    db = copy / "ledger.db"
    with (
        contextlib.closing(sqlite3.connect(api.db)) as source,
        contextlib.closing(sqlite3.connect(db)) as target,
    ):
        source.backup(target)
    for suffix in (".key", ".pub"):
        shutil.copy(str(api.db) + suffix, str(db) + suffix)
    with contextlib.closing(sqlite3.connect(db)) as raw:
        position, state = raw.execute(
            "SELECT rowid, state FROM stored_events ORDER BY rowid LIMIT 1 OFFSET 10"
        ).fetchone()
        changed = bytearray(state)
        changed[len(changed) // 2] ^= 0x01
        raw.execute(
            "UPDATE stored_events SET state = ? WHERE rowid = ?", (bytes(changed), position)
        )
        raw.commit()
    ledger = open_ledger(str(db), create=False)
    try:
        with (
            serve(create_app(str(db), str(api.config), ledger=ledger)) as url,
            api.client("reader") as client,
        ):
            response = client.post(f"{url}/v1/verify")
    finally:
        ledger.close()
    assert response.status_code == 409, response.text
    broken = response.json()
    assert broken["ok"] is False and broken["error"] == "tamper_detected"
    assert (broken["first_break"]["kind"], broken["first_break"]["position"]) == (
        "modified",
        position,
    )
    assert f"position {position}" in broken["message"]


def test_metrics_are_ledger_metrics_and_count_the_actions_recorded(api):
    applied(api, "b1")
    applied(api, "b2", {**CHANGE, "entity": "crm/contacts/2"})
    with api.client("reader") as client:
        response = client.get("/v1/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert response.content == metrics_text(api.ledger, {})  # what `ledger metrics` prints
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    counted = {
        (s.labels["workflow"], s.labels["operation"]): s.value
        for s in families["ledger_actions"].samples
        if s.name == "ledger_actions_total"
    }
    assert sum(counted.values()) == 52  # 50 tracked, 2 applied
    assert counted[("", "update")] == 2


@pytest.mark.parametrize("token", ["crm-reader", "sync-bot", "recorder"])
def test_whole_ledger_evidence_needs_an_unlimited_reading_token(api, token):
    with api.client(token) as client:
        answers = [
            client.post("/v1/verify"),
            client.get("/v1/digest"),
            client.get("/v1/metrics"),
        ]
    assert [answer.status_code for answer in answers] == [403, 403, 403]
    if token != "recorder":
        assert "covers the whole ledger" in answers[0].json()["message"]
