"""`ledger rollback plan|approve|plans|apply` and `ledger reconcile check|apply` as a user runs
them (subprocesses, a SQLite CRM through the SQL adapter, lanes in ledger.toml): the two-person
rule, the conflict and drift triggers, reconciliations recorded as evidence."""

import json
import subprocess
import sys

import sqlalchemy as sa
from crm_tables import make_contacts

from ledger import last_reconciliation, open_ledger
from ledger.plan_seal import seal
from ledger.rollback.plan import PLAN_FORMAT
from ledger.transcoder import OrjsonTranscoder

LEDGER = [sys.executable, "-m", "ledger"]
COUNT = 6
LANE = """
[lanes.lead-sync]
systems = ["crm"]
approval = "two-person"

[lanes.lead-sync.triggers]
drift_share = { above = 0.2 }
rollback_conflicts = { more_than = 1 }
"""


def setup(workspace):
    tmp_path, crm, env = workspace
    config = tmp_path / "ledger.toml"
    config.write_text(config.read_text() + LANE)
    engine = make_contacts(f"sqlite:///{crm}", COUNT, stage="lead", owner="ann")
    changes = tmp_path / "changes.jsonl"
    changes.write_text(
        "".join(
            json.dumps(
                {
                    "entity": f"crm/contacts/{i:05d}",
                    "op": "update",
                    "set": {"stage": "sql", "owner": "dara"},
                }
            )
            + "\n"
            for i in range(COUNT)
        )
    )
    ran = ledger(
        env, "apply", changes, "--system", "crm", "--batch", "run-1", "--workflow", "lead-sync"
    )
    assert ran.returncode == 0, ran.stderr
    return tmp_path, engine, env


def ledger(env, *args, actor=None):
    return subprocess.run(
        [*LEDGER, *map(str, args)],
        env={**env, **({"LEDGER_ACTOR": actor} if actor else {})},
        capture_output=True,
        text=True,
    )


def rows(engine):
    with engine.connect() as connection:
        return {
            r[0]: (r[1], r[2])
            for r in connection.execute(sa.text("SELECT id, stage, owner FROM contacts"))
        }


def outside_edit(engine, *keys):
    with engine.begin() as connection:
        for key in keys:
            connection.execute(
                sa.text("UPDATE contacts SET owner = 'zed' WHERE id = :id"), {"id": key}
            )


def test_a_two_person_lanes_plan_is_applied_only_after_another_person_approves_it(workspace):
    tmp_path, engine, env = setup(workspace)
    plan = tmp_path / "plan.bin"
    planned = ledger(
        env, "rollback", "plan", "--batch", "run-1", "--out", plan, "--json", actor="alice"
    )
    assert planned.returncode == 0, planned.stderr
    made = json.loads(planned.stdout)
    assert (made["planner"], made["workflows"]) == ("alice", ["lead-sync"])
    after_run = rows(engine)

    refused = ledger(env, "rollback", "apply", "--plan", plan, "--actor", "alice")
    assert refused.returncode == 1
    assert f"rollback plan {made['id']} of workflow 'lead-sync'" in refused.stderr
    assert f"`ledger rollback approve {made['id']}`" in refused.stderr
    assert "nothing was applied" in refused.stderr and "Traceback" not in refused.stderr
    assert rows(engine) == after_run

    own = ledger(env, "rollback", "approve", plan, "--actor", "alice")
    assert own.returncode == 1
    assert f"rollback plan {made['id']} was planned by alice; someone else" in own.stderr

    approved = ledger(env, "rollback", "approve", made["id"], "--json", actor="bob")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["approver"] == "bob"
    [listed] = json.loads(ledger(env, "rollback", "plans", "--json").stdout)
    assert (listed["plan"], listed["approved_by"], listed["status"]) == (
        made["id"],
        ["bob"],
        "not applied",
    )

    applied = ledger(env, "rollback", "apply", "--plan", plan, "--actor", "alice")
    assert applied.returncode == 0, applied.stderr
    assert rows(engine) == {f"{i:05d}": ("lead", "ann") for i in range(COUNT)}
    [listed] = json.loads(ledger(env, "rollback", "plans", "--json").stdout)
    assert listed["status"] == "verified"  # applied, and read back clean


def test_a_plan_altered_after_its_approval_is_refused(workspace):
    tmp_path, engine, env = setup(workspace)
    plan = tmp_path / "plan.bin"
    assert (
        ledger(env, "rollback", "plan", "--batch", "run-1", "--out", plan, actor="alice").returncode
        == 0
    )
    assert ledger(env, "rollback", "approve", plan, actor="bob").returncode == 0
    after_run = rows(engine)
    header, _, compensations = plan.read_bytes().partition(b"\n")
    content = OrjsonTranscoder().decode(header)["plan"]
    resealed = seal(PLAN_FORMAT, {**content, "planner": "carol"})  # sealed again
    plan.write_bytes(resealed + b"\n" + compensations)
    refused = ledger(env, "rollback", "apply", "--plan", plan, actor="carol")
    assert refused.returncode == 1
    assert f"rollback plan {content['id']} was altered after bob approved it" in refused.stderr
    edited = plan.read_bytes().replace(b'"carol"', b'"dave"')  # not sealed again
    plan.write_bytes(edited)
    refused = ledger(env, "rollback", "apply", "--plan", plan, actor="dave")
    assert refused.returncode == 1 and "altered after it was saved" in refused.stderr
    assert rows(engine) == after_run


def test_a_plan_with_too_many_conflicts_pauses_the_lane_and_is_still_saved(workspace):
    tmp_path, engine, env = setup(workspace)
    outside_edit(engine, "00001", "00002")
    plan = tmp_path / "plan.bin"
    planned = ledger(env, "rollback", "plan", "--batch", "run-1", "--out", plan, "--json")
    assert planned.returncode == 2, planned.stderr
    made = json.loads(planned.stdout)
    assert len(made["conflicts"]) == 2 and plan.is_file()
    assert made["trips"] == [
        {
            "workflow": "lead-sync",
            "trigger": "rollback_conflicts",
            "rule": f"rollback plan {made['id']} has 2 conflicts, more than 1",
            "paused_now": True,
        }
    ]
    assert made["saved"]["path"] == str(plan.resolve())


def test_reconciliations_are_recorded_and_drift_above_the_share_pauses_the_lane(workspace):
    _tmp_path, engine, env = setup(workspace)
    outside_edit(engine, "00001", "00002")  # 2 of 6: 33% > 20%
    checked = ledger(env, "reconcile", "check", "crm/contacts", "--json", actor="cron")
    assert checked.returncode == 2, checked.stderr
    recorded = json.loads(checked.stdout)["recorded"]
    assert (recorded["drifted"], recorded["checked"], recorded["actor"]) == (2, COUNT, "cron")
    assert [t["workflow"] for t in recorded["trips"]] == ["lead-sync"]
    human = ledger(env, "reconcile", "check", "crm/contacts")
    assert "lane lead-sync was already paused: drift_share tripped: 2 of 6" in human.stdout

    repaired = ledger(
        env, "reconcile", "apply", "crm/contacts", "--policy", "ledger", "--json", "--actor", "ops"
    )
    assert repaired.returncode == 0, repaired.stderr
    assert json.loads(repaired.stdout)["recorded"]["drifted"] == 0
    store = open_ledger(env["LEDGER_DB"])
    last = last_reconciliation(store, "crm/contacts")
    assert (last.drifted, last.checked) == (0, COUNT)
    store.close()
