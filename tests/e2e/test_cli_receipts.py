"""`ledger receipt` and `ledger runbook` as a user runs them: real processes, a real SQLite
CRM written through `ledger apply`, rolled back through `ledger rollback apply`."""

import contextlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from crm_tables import make_contacts

from ledger import Address, open_ledger
from ledger.errors import TamperDetected
from ledger.integrity import parse_receipt, stored_event_bytes, verify_receipt
from ledger.lane_control import pause_lane
from ledger.signing import load_public_key

LEDGER = [sys.executable, "-m", "ledger"]
LANE = """
[lanes.lead-sync]
owner = "revops@example.com"
systems = ["crm"]
notify = ["log"]
receipt_fields = ["owner", "stage"]

[lanes.lead-sync.triggers]
deletes = { more_than = 200 }
fields.stage = { order = ["lead", "mql", "sql"] }

[lanes.lead-sync.reenable]
canary = 5
"""


def ledger(env, *args):
    return subprocess.run([*LEDGER, *map(str, args)], env=env, capture_output=True, text=True)


def applied(workspace):
    """Contacts 00000-00002 (stage lead, owner ann); batch sync-1 of lead-sync sets 00001 and
    00002 to sql; returns the folder, the environment and the fingerprint of 00001's action."""
    folder, crm, env = workspace
    make_contacts(f"sqlite:///{crm}", 3, stage="lead", owner="ann").dispose()
    with (folder / "ledger.toml").open("a") as config:
        config.write(LANE)
    changes = folder / "sync.jsonl"
    changes.write_text(
        "".join(
            json.dumps({"entity": f"crm/contacts/0000{i}", "op": "update", "set": {"stage": "sql"}})
            + "\n"
            for i in (1, 2)
        )
    )
    done = ledger(
        env, "apply", changes, "--system", "crm", "--batch", "sync-1", "--workflow", "lead-sync"
    )
    assert done.returncode == 0, done.stderr
    history = json.loads(ledger(env, "history", "crm/contacts/00001", "--json").stdout)
    return folder, env, history[-1]["fingerprint"]


def test_receipt_for_people_and_as_json(workspace):
    _, env, fingerprint = applied(workspace)
    shown = ledger(env, "receipt", fingerprint[:20])
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    for heading in ("What", "Why", "Change", "Checks", "Correction path", "Proof"):
        assert f"\n{heading}\n" in text
    assert text.index("* owner") < text.index("* stage") < text.index("final:")  # lane's fields
    assert '* stage: "lead" → "sql"' in text
    assert 'expected the target to hold: stage="lead"' in text
    assert "passed  compare-and-set" in text and "passed  lane-gate" in text
    assert "status: standing" in text
    document = json.loads(ledger(env, "receipt", fingerprint, "--json").stdout)
    assert set(document) == {
        "fingerprint",
        "what",
        "why",
        "change",
        "checks",
        "review",
        "correction",
        "proof",
    }
    assert document["fingerprint"] == fingerprint
    assert document["what"]["entity"] == "crm/contacts/00001"
    assert document["what"]["workflow"] == "lead-sync"
    assert document["change"]["proposed"]["expected"] == {"stage": "lead"}
    assert document["change"]["final"] == {"stage": ["lead", "sql"]}
    assert document["change"]["highlight"] == {"owner": ["ann", "ann"], "stage": ["lead", "sql"]}
    assert {c["name"]: c["status"] for c in document["checks"]}["compare-and-set"] == "passed"
    same = json.loads(ledger(env, "receipt", "crm/contacts/00001@2", "--json").stdout)
    assert same == document


def test_a_receipts_proof_checks_offline_with_only_the_public_key(workspace, tmp_path):
    """The proof written by --proof-out is checked with the public key alone, after the
    ledger's database is gone; the event's bytes hash to its leaf; an edited proof fails."""
    _, env, fingerprint = applied(workspace)
    proof_file = tmp_path / "proof.json"
    shown = ledger(env, "receipt", fingerprint, "--proof-out", proof_file, "--json")
    assert shown.returncode == 0, shown.stderr
    database = Path(env["LEDGER_DB"])
    action = open_ledger(str(database)).history(Address.parse("crm/contacts/00001"))[-1]
    event_bytes = _stored_bytes(database, action.position)
    public_key = load_public_key(Path(f"{database}.pub"))
    database.unlink()
    proved = parse_receipt(proof_file.read_text())
    assert proved.position == action.position
    assert json.loads(shown.stdout)["proof"] == json.loads(proof_file.read_text())
    verify_receipt(proved, public_key, event_bytes)
    with pytest.raises(TamperDetected):
        verify_receipt(proved, public_key, event_bytes.replace(b"sql", b"sqm"))
    document = json.loads(proof_file.read_text())
    document["leaf_index"] += 1
    with pytest.raises(TamperDetected):
        verify_receipt(parse_receipt(json.dumps(document)), public_key)


def _stored_bytes(database, position):
    """The event's bytes as the store holds them (what its leaf hashes), read with sqlite3."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        row = db.execute(
            "SELECT rowid, originator_id, originator_version, topic, state "
            "FROM stored_events WHERE rowid = ?",
            (position,),
        ).fetchone()
    return stored_event_bytes(*row)


def test_receipt_after_a_rollback_names_the_rollback(workspace):
    _, env, fingerprint = applied(workspace)
    rolled = ledger(env, "rollback", "apply", "--batch", "sync-1", "--json")
    assert rolled.returncode == 0, rolled.stderr
    batch = json.loads(rolled.stdout)["batch"]
    document = json.loads(ledger(env, "receipt", fingerprint, "--json").stdout)
    correction = document["correction"]
    assert correction["status"] == "compensated"
    (by,) = correction["corrections"]
    assert by["batch"] == batch and by["version"] == 3
    text = ledger(env, "receipt", fingerprint).stdout
    assert f"compensated by {by['fingerprint']} (crm/contacts/00001@3, batch {batch}" in text
    assert "status: compensated" in text


def test_an_ambiguous_or_unknown_action_is_one_line_and_exit_1(workspace):
    _, env, _ = applied(workspace)
    ambiguous = ledger(env, "receipt", "sha256:")
    assert ambiguous.returncode == 1
    assert ambiguous.stdout == "" and len(ambiguous.stderr.splitlines()) == 1
    assert "'sha256:' starts 2 fingerprints" in ambiguous.stderr
    assert "(crm/contacts/00001@2)" in ambiguous.stderr
    assert "(crm/contacts/00002@2)" in ambiguous.stderr
    unknown = ledger(env, "receipt", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr == (
        "Error: no action has fingerprint 'nope' or one starting with it; see "
        "`ledger history ENTITY` for fingerprints, or name it as ENTITY@VERSION\n"
    )


def test_runbook_prints_writes_and_answers_json(workspace):
    folder, env, _ = applied(workspace)
    ledger_db = open_ledger(env["LEDGER_DB"])
    pause_lane(ledger_db, "lead-sync", "owners look wrong", "alice")
    ledger_db.close()
    shown = ledger(env, "runbook", "lead-sync")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("# Runbook: lead-sync\n")
    assert "**Paused** by alice" in shown.stdout
    assert "| crm | contacts | 2 | 2 |" in shown.stdout
    assert "would: 2 to restore; 0 conflicts left for review" in shown.stdout
    assert '- `stage` moving backwards in "lead" → "mql" → "sql"' in shown.stdout
    out = folder / "runbook.md"
    written = ledger(env, "runbook", "lead-sync", "--out", out)
    assert written.returncode == 0 and written.stdout == f"wrote {out}\n"
    assert out.read_text().startswith("# Runbook: lead-sync\n")
    document = json.loads(ledger(env, "runbook", "lead-sync", "--json").stdout)
    assert set(document) == {"workflow", "lane", "markdown"}
    assert document["lane"] is True and "## Re-enable rule" in document["markdown"]
    unlaned = json.loads(ledger(env, "runbook", "billing", "--json").stdout)
    assert unlaned["lane"] is False
    assert "**No lane is configured** for `billing`" in unlaned["markdown"]
    refused = ledger(env, "runbook", "bad name")
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1
    assert "workflow 'bad name' must be letters" in refused.stderr
