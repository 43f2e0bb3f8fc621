"""`ledger pause | enable | canary | lanes | lane` and the lane in `ledger apply`, run as the
user runs them: real processes against a real SQLite CRM and ledger."""

import contextlib
import json
import sqlite3
import subprocess
import sys

import pytest

from ledger import open_ledger
from ledger.lanes import lane_id

LANE = """
[lanes.lead-sync]
owner = "revops@example.com"
systems = ["crm"]

[lanes.lead-sync.triggers]
updates = { more_than = 600 }

[lanes.lead-sync.reenable]
reconciled = ["crm/contacts"]
canary = 2
approver = true
"""


@pytest.fixture
def crm(workspace):
    folder, path, env = workspace
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE contacts (id TEXT PRIMARY KEY, stage TEXT)")
        db.executemany(
            "INSERT INTO contacts VALUES (?, 'lead')", [(f"{i:05d}",) for i in range(1200)]
        )
        db.commit()
    config = folder / "ledger.toml"
    config.write_text(config.read_text() + LANE)
    return folder, path, {**env, "LEDGER_ACTOR": "alice"}


def ledger(env, *args, actor=None):
    run_env = env if actor is None else {**env, "LEDGER_ACTOR": actor}
    return subprocess.run(
        [sys.executable, "-m", "ledger", *map(str, args)],
        env=run_env,
        capture_output=True,
        text=True,
    )


def changes(folder, keys, name="changes.jsonl"):
    path = folder / name
    path.write_text(
        "".join(
            json.dumps({"entity": f"crm/contacts/{k:05d}", "op": "update", "set": {"stage": "sql"}})
            + "\n"
            for k in keys
        )
    )
    return path


def run_1(env, folder, *options):
    """`ledger apply` of 1,200 updates as batch run-1 of lead-sync (its trigger trips at 600)."""
    batch = ("--system", "crm", "--batch", "run-1", "--workflow", "lead-sync")
    return ledger(env, "apply", changes(folder, range(1200)), *batch, *options)


def stages(path):
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [s for (s,) in db.execute("SELECT stage FROM contacts ORDER BY id")]


def test_a_paused_workflow_is_refused_by_apply_and_record_with_exit_3(crm):
    folder, path, env = crm
    paused = ledger(env, "pause", "lead-sync", "--reason", "owners look wrong", "--json")
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout)["lane"]["pause"]["actor"] == "alice"
    applied = ledger(
        env,
        "apply",
        changes(folder, range(3)),
        "--system",
        "crm",
        "--batch",
        "run-1",
        "--workflow",
        "lead-sync",
    )
    assert applied.returncode == 3
    assert (
        "'lead-sync' is paused (by alice" in applied.stderr
        and "owners look wrong" in applied.stderr
    )
    assert "Traceback" not in applied.stderr
    assert stages(path) == ["lead"] * 1200
    recorded = ledger(
        env,
        "record",
        "--entity",
        "crm/contacts/x",
        "--op",
        "create",
        "--set",
        "stage=lead",
        "--workflow",
        "lead-sync",
    )
    assert recorded.returncode == 3 and "nothing was written" in recorded.stderr
    (view,) = json.loads(ledger(env, "lanes", "--json").stdout)
    assert (view["workflow"], view["state"], view["owner"]) == (
        "lead-sync",
        "paused",
        "revops@example.com",
    )
    assert view["pause"]["reason"] == "owners look wrong"
    assert "owners look wrong" in ledger(env, "lanes").stdout


def test_a_trip_stops_apply_at_the_chunk_pauses_the_lane_and_exits_3(crm):
    folder, path, env = crm
    applied = run_1(env, folder, "--json")
    assert applied.returncode == 3, applied.stderr
    summary = json.loads(applied.stdout)
    assert (summary["stopped"], summary["left"]) == ("tripped", 200)
    assert summary["lane"]["trip"]["trigger"] == "updates"
    assert stages(path) == ["sql"] * 1000 + ["lead"] * 200  # two chunks of 500, nothing after
    view = json.loads(ledger(env, "lane", "lead-sync", "--json").stdout)
    assert view["state"] == "paused"
    shown = ledger(env, "lane", "lead-sync")
    assert shown.returncode == 0, shown.stderr
    assert "owner: revops@example.com" in shown.stdout
    assert "trigger: updates" in shown.stdout
    assert view["last_trip"]["trigger"] == "updates"
    assert view["last_trip"]["evidence"]["count"] == 1000
    assert view["last_trip"]["batch"] == "run-1"


def test_enable_is_refused_naming_each_unmet_condition_then_accepted_with_proof(crm):
    folder, path, env = crm
    assert ledger(env, "track", "crm/contacts").returncode == 0  # the ledger knows every record
    ledger(env, "pause", "lead-sync", "--reason", "owners look wrong")
    refused = ledger(env, "enable", "lead-sync", "--reason", "fixed", actor="bob")
    assert refused.returncode == 1
    assert "crm/contacts has not been reconciled" in refused.stderr
    assert "no canary run of 2 actions" in refused.stderr
    assert "no approver signed off" in refused.stderr
    admitted = ledger(env, "canary", "lead-sync", "--batch", "canary-1", "--limit", "2")
    assert admitted.returncode == 0, admitted.stderr
    canary = ledger(
        env,
        "apply",
        changes(folder, range(5)),
        "--system",
        "crm",
        "--batch",
        "canary-1",
        "--workflow",
        "lead-sync",
    )
    assert canary.returncode == 2, canary.stderr  # the rest of a canary is left for review
    assert stages(path)[:5] == ["sql", "sql", "lead", "lead", "lead"]
    with contextlib.closing(sqlite3.connect(path)) as db:  # someone edits a record outside
        db.execute("UPDATE contacts SET stage = 'customer' WHERE id = '01000'")
        db.commit()
    assert ledger(env, "reconcile", "check", "crm/contacts").returncode == 2
    drifted = ledger(
        env, "enable", "lead-sync", "--reason", "fixed", "--approver", "carol", actor="bob"
    )
    assert drifted.returncode == 1
    assert "crm/contacts's last reconciliation found 1 drifted records" in drifted.stderr
    adopted = ledger(env, "reconcile", "apply", "crm/contacts", "--policy", "target")
    assert adopted.returncode == 0, adopted.stderr + adopted.stdout
    self_approved = ledger(
        env, "enable", "lead-sync", "--reason", "fixed", "--approver", "alice", actor="bob"
    )
    assert self_approved.returncode == 1 and "someone other than the pauser" in self_approved.stderr
    enabled = ledger(
        env,
        "enable",
        "lead-sync",
        "--reason",
        "fixed",
        "--approver",
        "carol",
        "--json",
        actor="bob",
    )
    assert enabled.returncode == 0, enabled.stderr
    result = json.loads(enabled.stdout)
    assert result["unmet"] == [] and result["lane"]["state"] == "active"
    assert any("canary canary-1 completed 2 actions" in m for m in result["met"])
    assert any(m.startswith("crm/contacts reconciled clean") for m in result["met"])
    assert result["lane"]["last_enable"]["evidence"]["approver"] == "carol"
    assert result["lane"]["last_enable"]["override"] is False
    rest = ledger(
        env,
        "apply",
        changes(folder, range(5, 10)),
        "--system",
        "crm",
        "--batch",
        "run-2",
        "--workflow",
        "lead-sync",
    )
    assert rest.returncode == 0, rest.stderr


def test_an_override_needs_a_reason_and_is_recorded_as_one(crm):
    _, _, env = crm
    ledger(env, "pause", "lead-sync", "--reason", "owners look wrong")
    overridden = ledger(env, "enable", "lead-sync", "--reason", "vendor outage over", "--override")
    assert overridden.returncode == 0, overridden.stderr
    assert "overridden by alice" in overridden.stdout
    last = json.loads(ledger(env, "lane", "lead-sync", "--json").stdout)["last_enable"]
    assert (last["override"], last["reason"]) == (True, "vendor outage over")


def test_two_processes_pausing_at_once_make_one_pause(crm):
    _, _, env = crm
    pausing = [
        subprocess.Popen(
            [sys.executable, "-m", "ledger", "pause", "lead-sync", "--reason", f"stop {n}"],
            env={**env, "LEDGER_ACTOR": f"op{n}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    results = [p.communicate(timeout=60) for p in pausing]
    assert [p.returncode for p in pausing] == [0, 0], results
    assert sum("already paused" in out for out, _ in results) == 1
    db = open_ledger(env["LEDGER_DB"])
    assert db.repository.get(lane_id("lead-sync")).version == 2  # started, paused once
    db.close()


def test_a_trip_on_a_plan_rollback_lane_leaves_a_saved_plan_that_restores_the_run(crm):
    """`on_trip = "plan-rollback"`: the trip pauses the lane and plans the rollback of what
    the stopped run wrote, saved beside ledger.toml and recorded; applying it restores every
    written record."""
    folder, path, env = crm
    config = folder / "ledger.toml"
    config.write_text(
        config.read_text().replace(
            '[lanes.lead-sync]\nowner = "revops@example.com"\n',
            '[lanes.lead-sync]\nowner = "revops@example.com"\non_trip = "plan-rollback"\n',
        )
    )
    applied = run_1(env, folder, "--json")
    assert applied.returncode == 3, applied.stderr
    planned = json.loads(applied.stdout)["rollback_plan"]
    plan_file = folder / "rollback-plans" / f"rollback-{planned['plan']}.plan"
    assert planned["path"] == str(plan_file) and plan_file.is_file()
    assert stages(path) == ["sql"] * 1000 + ["lead"] * 200
    listed = json.loads(ledger(env, "rollback", "plans", "--json").stdout)
    assert [p["plan"] for p in listed] == [planned["plan"]]
    assert "lead-sync tripped in batch run-1" in listed[0]["reason"]
    restored = ledger(env, "rollback", "apply", "--plan", plan_file, "--actor", "bob")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert stages(path) == ["lead"] * 1200
    (status,) = json.loads(ledger(env, "rollback", "plans", "--json").stdout)
    assert (status["status"], status["verification"]["checked"]) == ("verified", 1000)


def test_a_trip_is_a_structured_log_line_with_its_correlation_ids(crm):
    folder, _, env = crm
    applied = run_1({**env, "LEDGER_LOG_FORMAT": "json"}, folder)
    assert applied.returncode == 3, applied.stderr
    lines = [json.loads(line) for line in applied.stderr.splitlines() if line.startswith("{")]
    (tripped,) = [line for line in lines if line["event"] == "lane.tripped"]
    assert (tripped["workflow"], tripped["batch"], tripped["trigger"]) == (
        "lead-sync",
        "run-1",
        "updates",
    )
    assert tripped["level"] == "warning" and "run_id" in tripped
