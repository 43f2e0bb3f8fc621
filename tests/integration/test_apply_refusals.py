"""`ledger apply`: a line the ledger refuses is never written to the target."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from crm_tables import make_contacts

from ledger import open_ledger

LEDGER = [sys.executable, "-m", "ledger"]


def test_a_line_whose_before_contradicts_the_ledger_is_refused_and_never_written(
    workspace: tuple[Path, Path, dict[str, str]],
) -> None:
    tmp_path, crm, env = workspace
    make_contacts(f"sqlite:///{crm}", 30, stage="lead").dispose()
    lines = []
    for i in range(30):
        change: dict[str, object] = {
            "entity": f"crm/contacts/{i:05d}",
            "op": "update",
            "set": {"stage": "customer"},
        }
        if i == 7:
            change["before"] = {"stage": "mql"}  # the ledger will know it as "lead"
        lines.append(json.dumps(change))
    # First the ledger learns the records, so line 7's `before` contradicts what it knows.
    first = tmp_path / "first.jsonl"
    first.write_text(
        "".join(
            json.dumps(
                {"entity": f"crm/contacts/{i:05d}", "op": "update", "set": {"stage": "lead"}}
            )
            + "\n"
            for i in range(30)
        )
    )
    subprocess.run(
        [*LEDGER, "apply", str(first), "--system", "crm", "--batch", "seen"],
        env=env,
        check=True,
        capture_output=True,
    )
    changes = tmp_path / "changes.jsonl"
    changes.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [*LEDGER, "apply", str(changes), "--system", "crm", "--batch", "b2", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 3, result.stderr
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"applied": 29, "stale": 1}
    (refused,) = summary["refused"]
    assert refused["entity"] == "crm/contacts/00007"
    assert (refused["field"], refused["expected"], refused["actual"]) == ("stage", "mql", "lead")
    stages = dict(sqlite3.connect(crm).execute("SELECT id, stage FROM contacts").fetchall())
    assert stages["00007"] == "lead"
    assert sum(stage == "customer" for stage in stages.values()) == 29
    ledger = open_ledger(env["LEDGER_DB"])
    assert ledger.index.pending() == []
    assert ledger.batch_view("b2").actions == 29


def test_a_fingerprint_reused_for_another_record_in_a_run_is_refused_and_not_written(
    tmp_path: Path,
) -> None:
    from adapters.sql import SqlAdapter, SqlCollection
    from ledger import Address, Change, Run, Target

    crm = tmp_path / "crm.db"
    make_contacts(f"sqlite:///{crm}", 2, stage="lead").dispose()
    ledger = open_ledger(str(tmp_path / "ledger.db"))
    target = Target(
        SqlAdapter("crm", f"sqlite:///{crm}", {"contacts": SqlCollection("contacts")}), "contacts"
    )
    first = Change(
        Address("crm", "contacts", "00000"), "update", values={"stage": "sql"}, fingerprint="k"
    )
    reused = Change(
        Address("crm", "contacts", "00001"), "update", values={"stage": "sql"}, fingerprint="k"
    )
    assert Run(ledger, "b1").apply(target, [first])[0].status == "applied"
    (outcome,) = Run(ledger, "b1").apply(target, [reused])
    assert outcome.status == "failed"
    assert "fingerprint 'k' already names the update of crm/contacts/00000" in (outcome.error or "")
    stages = dict(sqlite3.connect(crm).execute("SELECT id, stage FROM contacts").fetchall())
    assert stages == {"00000": "sql", "00001": "lead"}
