"""The rollback commands speak the one exit-code table (0 done, 1 error, 2 done with items left
for review, 3 writes refused or failed), and a finished rollback stays finished: running it
again is a no-op that says it was already applied, and its batch is closed however many runs
it took."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from crm_tables import make_contacts

from adapters.memory import MemoryAdapter
from ledger import Address, Ledger, RollbackScope, apply_rollback, open_ledger, plan_rollback
from ledger.runs import Run, Target

LEDGER = [sys.executable, "-m", "ledger"]


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LEDGER, *args], env=env, capture_output=True, text=True)


@pytest.fixture
def applied(workspace: tuple[Path, Path, dict[str, str]]) -> tuple[Path, Path, dict[str, str]]:
    """Batch b1 through the SQL adapter: two contacts updated, one created with only some of
    its columns (so deleting it makes the rollback's own run learn the others first)."""
    tmp_path, crm, env = workspace
    make_contacts(f"sqlite:///{crm}", 3, stage="lead", owner="ann").dispose()
    lines = tmp_path / "b1.jsonl"
    changes = [
        {"entity": "crm/contacts/00000", "op": "update", "set": {"stage": "sql"}},
        {"entity": "crm/contacts/00001", "op": "update", "set": {"stage": "sql"}},
        {"entity": "crm/contacts/00009", "op": "create", "set": {"stage": "new"}},
    ]
    lines.write_text("".join(json.dumps(change) + "\n" for change in changes))
    assert run_cli(env, "apply", str(lines), "--system", "crm", "--batch", "b1").returncode == 0
    return tmp_path, crm, env


def positions(env: dict[str, str]) -> int:
    ledger = open_ledger(env["LEDGER_DB"])
    try:
        return ledger.recorder.max_notification_id() or 0
    finally:
        ledger.close()


def test_a_rerun_of_a_finished_rollback_is_a_no_op_that_exits_0(applied: Any) -> None:
    tmp_path, crm, env = applied
    saved = str(tmp_path / "plan.bin")
    assert run_cli(env, "rollback", "plan", "--batch", "b1", "--out", saved).returncode == 0
    first = run_cli(env, "rollback", "apply", "--plan", saved)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "verification: verified" in first.stdout
    events = positions(env)
    table = sqlite3.connect(crm).execute("SELECT * FROM contacts ORDER BY id").fetchall()

    again = run_cli(env, "rollback", "apply", "--plan", saved)
    replanned = run_cli(env, "rollback", "apply", "--batch", "b1")
    check = run_cli(env, "rollback", "check", "--batch", "b1")

    assert again.returncode == 0, again.stdout + again.stderr
    assert "already applied" in again.stdout and "skipped" not in again.stdout
    assert replanned.returncode == 0, replanned.stdout + replanned.stderr
    assert "already applied: 3 record(s)" in replanned.stdout
    assert check.returncode == 0, check.stdout
    assert "3 already rolled back" in check.stdout
    assert positions(env) == events
    assert sqlite3.connect(crm).execute("SELECT * FROM contacts ORDER BY id").fetchall() == table
    status = json.loads(run_cli(env, "rollback", "status", "--json").stdout)
    assert [(s["status"], s["actions"]) for s in status] == [("closed", 3)]


def test_writes_refused_since_the_plan_exit_3_and_mistakes_exit_1(applied: Any) -> None:
    tmp_path, crm, env = applied
    saved = str(tmp_path / "plan.bin")
    run_cli(env, "rollback", "plan", "--batch", "b1", "--out", saved)
    database = sqlite3.connect(crm)
    database.execute("UPDATE contacts SET owner = 'zed' WHERE id = '00001'")
    database.commit()

    forced = run_cli(env, "rollback", "apply", "--plan", saved, "--policy", "force")
    refused = run_cli(env, "rollback", "apply", "--plan", saved, "--json")
    usage = run_cli(env, "rollback", "apply", "--policy", "sometimes")

    assert forced.returncode == 1  # a saved plan keeps its policy: not silently ignored
    assert "--policy applies when planning" in forced.stderr

    assert refused.returncode == 3, refused.stdout + refused.stderr
    outcome = {o["entity"]: o for o in json.loads(refused.stdout)["outcomes"]}
    assert outcome["crm/contacts/00001"]["field"] == "owner"  # skip: the whole record must hold
    assert usage.returncode == 1 and "Invalid value for '--policy'" in usage.stderr


def test_a_rollback_resumed_after_a_crash_closes_its_batch(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after the last compensation landed, before the batch was closed: the
    next run finds every compensation done and closes the batch."""
    crm = MemoryAdapter("crm", {"contacts": {"1": {"stage": "lead"}}})
    with Run(ledger, "b") as run:
        run.update(Target(crm, "contacts"), "1", {"stage": "sql"})
    chosen = plan_rollback(ledger, RollbackScope(batches=("b",)), {"crm": crm})

    def killed(self: Ledger, name: str) -> Any:
        raise KeyboardInterrupt("killed before closing the batch")

    with monkeypatch.context() as patch:
        patch.setattr(Ledger, "close_batch", killed)
        with pytest.raises(KeyboardInterrupt):
            apply_rollback(ledger, chosen, {"crm": crm})
    assert ledger.batch_view(chosen.batch).status == "open"

    resumed = apply_rollback(ledger, chosen, {"crm": crm})

    assert ledger.batch_view(chosen.batch).status == "closed"
    assert resumed.counts == {"restored": 1} and not resumed.finished
    assert apply_rollback(ledger, chosen, {"crm": crm}).finished
    assert crm.read("contacts", ["1"])["1"] == {"stage": "lead"}
    assert ledger.state(Address("crm", "contacts", "1")).fields == {"stage": "lead"}
