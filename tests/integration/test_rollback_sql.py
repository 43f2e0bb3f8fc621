"""Rollback through the SQL adapter and the CLI, on real SQLite and PostgreSQL targets."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest
import sqlalchemy as sa
from crash_after import kill_and_recover
from crm_tables import make_contacts

from adapters.sql import SqlAdapter, SqlCollection
from ledger import Address, Change, RollbackScope, apply_rollback, open_ledger, plan_rollback
from ledger.runs import Run, Target

LEDGER = [sys.executable, "-m", "ledger"]


def make_crm(url, count):
    return make_contacts(url, count, stage="lead", owner="ann")


def rows(engine):
    with engine.connect() as connection:
        return {
            r[0]: (r[1], r[2])
            for r in connection.execute(sa.text("SELECT id, stage, owner FROM contacts"))
        }


def test_records_edited_between_plan_and_apply_keep_the_outside_values(sql_url, tmp_path):
    engine = make_crm(sql_url, 6)
    adapter = SqlAdapter("crm", sql_url, {"contacts": SqlCollection("contacts")})
    ledger = open_ledger(str(tmp_path / "ledger.db"))
    with Run(ledger, "lead-sync") as run:
        run.apply(
            Target(adapter, "contacts"),
            [
                Change(
                    Address("crm", "contacts", f"{i:05d}"),
                    "update",
                    values={"stage": "sql", "owner": "dara"},
                )
                for i in range(6)
            ],
        )
    rollback = plan_rollback(ledger, RollbackScope(batches=("lead-sync",)), {"crm": adapter})
    with engine.begin() as connection:  # someone edits two records after the plan was made
        connection.execute(
            sa.text("UPDATE contacts SET owner = 'zed' WHERE id IN ('00001', '00004')")
        )
    report = apply_rollback(ledger, rollback, {"crm": adapter})
    outcomes = {o["entity"].rsplit("/", 1)[1]: o for o in report.outcomes}
    assert {k for k, o in outcomes.items() if o["outcome"] == "skipped"} == {"00001", "00004"}
    assert outcomes["00001"]["expected"] == "dara" and outcomes["00001"]["actual"] == "zed"
    assert report.mismatches == []
    assert rows(engine) == {
        **{f"{i:05d}": ("lead", "ann") for i in (0, 2, 3, 5)},
        "00001": ("sql", "zed"),
        "00004": ("sql", "zed"),
    }
    adapter.close()
    engine.dispose()


def apply_batch(tmp_path, env, count):
    path = tmp_path / "batch.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "entity": f"crm/contacts/{i:05d}",
                    "op": "update",
                    "set": {"stage": "sql", "owner": "dara"},
                }
            )
            + "\n"
            for i in range(count)
        )
    )
    subprocess.run(
        [*LEDGER, "apply", str(path), "--system", "crm", "--batch", "b1"],
        env=env,
        check=True,
        capture_output=True,
    )


def test_plan_then_apply_from_the_cli(workspace):
    tmp_path, crm, env = workspace
    make_crm(f"sqlite:///{crm}", 3).dispose()
    apply_batch(tmp_path, env, 3)
    sqlite3.connect(crm).execute(
        "UPDATE contacts SET stage = 'won' WHERE id = '00002'"
    ).connection.commit()
    planned = subprocess.run(
        [
            *LEDGER,
            "rollback",
            "plan",
            "--batch",
            "b1",
            "--out",
            str(tmp_path / "plan.bin"),
            "--runbook",
            str(tmp_path / "rb.md"),
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert planned.returncode == 2, planned.stderr
    summary = json.loads(planned.stdout)
    assert [c["entity"] for c in summary["conflicts"]] == ["crm/contacts/00002"]
    assert "## Conflicts (1)" in (tmp_path / "rb.md").read_text()
    applied = subprocess.run(
        [*LEDGER, "rollback", "apply", "--plan", str(tmp_path / "plan.bin"), "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert applied.returncode == 2, applied.stderr  # done, the conflict left for review
    assert json.loads(applied.stdout)["counts"] == {"restored": 2, "skipped": 1}
    assert json.loads(applied.stdout)["verification"]["clean"]
    again = subprocess.run(
        [*LEDGER, "rollback", "apply", "--plan", str(tmp_path / "plan.bin"), "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2, again.stderr  # nothing done; the conflict is still there
    assert json.loads(again.stdout)["already_applied"]
    assert json.loads(again.stdout)["counts"] == {"restored": 2, "skipped": 1}
    history = subprocess.run(
        [*LEDGER, "history", "crm/contacts/00000", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    operations = [a["operation"] for a in json.loads(history.stdout)]
    assert operations == ["track", "update", "update"]  # first seen, the batch, its rollback
    replayed = subprocess.run(
        [*LEDGER, "replay", "apply", "--batch", "b1", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert replayed.returncode == 2, replayed.stderr  # 00002 still conflicts: it is skipped
    assert json.loads(replayed.stdout)["counts"] == {"restored": 2, "skipped": 1}
    assert sqlite3.connect(crm).execute("SELECT stage FROM contacts ORDER BY id").fetchall() == [
        ("sql",),
        ("sql",),
        ("won",),
    ]
    status = subprocess.run(
        [*LEDGER, "rollback", "status", "--json"], env=env, capture_output=True, text=True
    )
    assert json.loads(status.stdout)[0]["actions"] == 2


@pytest.mark.slow
def test_a_rollback_killed_in_every_window_resumes_and_applies_each_compensation_once(workspace):
    tmp_path, crm, env = workspace
    count = 10_000
    make_crm(f"sqlite:///{crm}", count).dispose()
    apply_batch(tmp_path, env, count)
    plan_path = str(tmp_path / "plan.bin")
    subprocess.run(
        [*LEDGER, "rollback", "plan", "--batch", "b1", "--out", plan_path],
        env=env,
        capture_output=True,
        check=True,
    )
    def restored_exactly_once() -> None:
        restored_in_target, compensations = check_exactly_once(crm, tmp_path / "ledger.db")
        assert restored_in_target == set(compensations)

    killed = kill_and_recover(
        ["rollback", "apply", "--plan", plan_path],
        env,
        seed=int(os.environ.get("SIGKILL_SEED", "5")),
        chunks=count // 2000,
        after_recover=restored_exactly_once,
    )
    final = subprocess.run(
        [*LEDGER, "rollback", "apply", "--plan", plan_path, "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert final.returncode == 0, final.stderr
    assert killed == {"write", "before-write", "statement", "save"}, killed
    restored_in_target, compensations = check_exactly_once(crm, tmp_path / "ledger.db")
    assert len(restored_in_target) == len(compensations) == count


def check_exactly_once(crm, ledger_db):
    restored = {
        k for (k,) in sqlite3.connect(crm).execute("SELECT id FROM contacts WHERE stage = 'lead'")
    }
    counts = dict(
        sqlite3.connect(ledger_db).execute(
            "SELECT key, COUNT(*) FROM ledger_actions WHERE batch LIKE 'rollback-%' GROUP BY key"
        )
    )
    assert set(counts.values()) <= {1}
    return restored, counts


def test_a_rollback_spanning_a_sql_crm_and_a_csv_sheet_runs_in_reverse_global_order(tmp_path):
    from adapters.files import CsvCollection, FileAdapter
    from ledger.ports import Write

    engine = make_crm(f"sqlite:///{tmp_path / 'crm.db'}", 2)
    crm = SqlAdapter(
        "crm", f"sqlite:///{tmp_path / 'crm.db'}", {"contacts": SqlCollection("contacts")}
    )
    sheet = FileAdapter(
        "sheets", tmp_path, {"leads": CsvCollection("leads.csv", columns={"score": "int"})}
    )
    sheet.write(
        "leads", [Write("00000", "create", {"score": 1}), Write("00001", "create", {"score": 2})]
    )
    ledger = open_ledger(str(tmp_path / "ledger.db"))
    with Run(ledger, "sync") as run:  # interleaved across the two systems
        run.update(Target(crm, "contacts"), "00000", {"stage": "sql"})
        run.update(Target(sheet, "leads"), "00000", {"score": 10})
        run.update(Target(crm, "contacts"), "00001", {"stage": "sql"})
        run.update(Target(sheet, "leads"), "00001", {"score": 20})
    order = []
    for adapter in (crm, sheet):
        write = adapter.write

        def recording(collection, writes, write=write, system=adapter.system):
            order.extend(f"{system}/{w.key}" for w in writes)
            return write(collection, writes)

        adapter.write = recording
    report = apply_rollback(
        ledger,
        plan_rollback(ledger, RollbackScope(batches=("sync",)), {"crm": crm, "sheets": sheet}),
        {"crm": crm, "sheets": sheet},
    )
    assert order == ["sheets/00001", "crm/00001", "sheets/00000", "crm/00000"]
    assert report.counts == {"restored": 4} and report.mismatches == []
    assert rows(engine) == {"00000": ("lead", "ann"), "00001": ("lead", "ann")}
    assert dict(sheet.scan("leads")) == {"00000": {"score": 1}, "00001": {"score": 2}}
    crm.close()
    engine.dispose()
