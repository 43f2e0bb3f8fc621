"""`ledger apply` through the SQL adapter on real databases: exactly once, even under SIGKILL,
and never over an outside writer's edit."""

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa
from crash_after import kill_and_recover
from crm_tables import make_contacts

from adapters.sql import SqlAdapter, SqlCollection
from ledger import Address, Change, Run, Target, open_ledger

LEDGER = [sys.executable, "-m", "ledger"]


def make_crm(url, count):
    make_contacts(url, count, stage="lead", n=0).dispose()


def write_changes(path, keys, **values):
    path.write_text(
        "".join(
            json.dumps({"entity": f"crm/contacts/{k}", "op": "update", "set": values}) + "\n"
            for k in keys
        )
    )
    return str(path)


def test_apply_writes_records_and_reports_refusals_with_both_values(workspace):
    tmp_path, crm, env = workspace
    make_crm(f"sqlite:///{crm}", 3)
    changes = tmp_path / "changes.jsonl"
    changes.write_text(
        json.dumps({"entity": "crm/contacts/00000", "op": "update", "set": {"stage": "sql"}})
        + "\n"
        + json.dumps(
            {
                "entity": "crm/contacts/00001",
                "op": "update",
                "set": {"stage": "sql"},
                "expected": {"stage": "mql"},
            }
        )
        + "\n"
    )
    result = subprocess.run(
        [*LEDGER, "apply", str(changes), "--system", "crm", "--batch", "b1", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 3, result.stderr
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"applied": 1, "stale": 1}
    assert summary["refused"] == [
        {
            "entity": "crm/contacts/00001",
            "status": "stale",
            "field": "stage",
            "expected": "mql",
            "actual": "lead",
        }
    ]
    rows = sqlite3.connect(crm).execute("SELECT id, stage FROM contacts ORDER BY id").fetchall()
    assert rows == [("00000", "sql"), ("00001", "lead"), ("00002", "lead")]
    again = subprocess.run(
        [*LEDGER, "apply", str(changes), "--system", "crm", "--batch", "b1", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert json.loads(again.stdout)["counts"]["already_applied"] == 1


def test_apply_refuses_an_unknown_system_clearly(workspace):
    tmp_path, _, env = workspace
    path = write_changes(tmp_path / "c.jsonl", ["1"], stage="x")
    result = subprocess.run(
        [*LEDGER, "apply", path, "--system", "erp", "--batch", "b"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "not in system 'erp'" in result.stderr


@pytest.mark.slow
def test_sigkill_at_every_window_never_loses_or_doubles_an_action(workspace):
    """Kill `ledger apply` of a 10,000-change batch in each window of a write, recover, repeat;
    at every stop, each change that reached the target has exactly one action and no other
    has any."""
    tmp_path, crm, env = workspace
    count = 10_000
    make_crm(f"sqlite:///{crm}", count)
    path = write_changes(
        tmp_path / "batch.jsonl", [f"{i:05d}" for i in range(count)], stage="sql", n=1
    )
    ledger_db = tmp_path / "ledger.db"
    killed = kill_and_recover(
        ["apply", path, "--system", "crm", "--batch", "b1"],
        env,
        seed=int(os.environ.get("SIGKILL_SEED", "7")),
        chunks=count // 500,
        after_recover=lambda: assert_target_and_ledger_agree(crm, ledger_db),
    )
    final = subprocess.run(
        [*LEDGER, "apply", path, "--system", "crm", "--batch", "b1", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert final.returncode == 0, final.stderr
    assert killed == {"write", "before-write", "statement", "save"}, killed
    reached, actions = assert_target_and_ledger_agree(crm, ledger_db)
    assert len(reached) == count and len(actions) == count


def assert_target_and_ledger_agree(crm, ledger_db):
    reached = {
        k for (k,) in sqlite3.connect(crm).execute("SELECT id FROM contacts WHERE stage = 'sql'")
    }
    counts = dict(
        sqlite3.connect(ledger_db).execute(
            "SELECT key, COUNT(*) FROM ledger_actions WHERE batch = 'b1' GROUP BY key"
        )
    )
    assert set(counts) == reached
    assert set(counts.values()) <= {1}
    pending = sqlite3.connect(ledger_db).execute("SELECT COUNT(*) FROM ledger_pending").fetchone()
    assert pending == (0,)
    return reached, counts


def test_an_outside_writer_racing_a_batch_is_never_overwritten(sql_url, tmp_path):
    count = 400
    make_crm(sql_url, count)
    ledger = open_ledger(str(tmp_path / "ledger.db"))
    adapter = SqlAdapter("crm", sql_url, {"contacts": SqlCollection("contacts")})
    engine = sa.create_engine(sql_url)
    outside: dict[str, int] = {}
    stop = threading.Event()

    def outside_writer():
        rng = random.Random(3)
        while not stop.is_set() and len(outside) < 100:
            key = f"{rng.randrange(count):05d}"
            with engine.begin() as connection:
                connection.execute(
                    sa.text("UPDATE contacts SET n = n + 1000 WHERE id = :id"), {"id": key}
                )
            outside[key] = outside.get(key, 0) + 1
            time.sleep(0.001)

    writer = threading.Thread(target=outside_writer)
    writer.start()
    changes = [
        Change(Address("crm", "contacts", f"{i:05d}"), "update", values={"n": 1})
        for i in range(count)
    ]
    try:
        outcomes = Run(ledger, "race").apply(Target(adapter, "contacts"), changes, chunk_size=20)
    finally:
        stop.set()
        writer.join()
    with engine.connect() as connection:
        final = dict(connection.execute(sa.text("SELECT id, n FROM contacts")).all())
    for outcome in outcomes:
        key = outcome.entity.rsplit("/", 1)[1]
        edits = outside.get(key, 0)
        if outcome.status == "stale":
            # refused because an outside edit landed after the read: every edit survived
            assert outcome.field == "n" and outcome.actual != outcome.expected
            assert final[key] == edits * 1000
        else:
            # applied only on the exact value it read (its before-image); edits made before
            # that are in the before-image, edits made after are on top: none was lost
            assert outcome.status == "applied"
            before = outcome.receipt.action.before["n"]
            assert final[key] == 1 + edits * 1000 - before
    engine.dispose()
    adapter.close()


def test_an_edit_landing_between_read_and_write_is_refused_with_both_values(sql_url, tmp_path):
    make_crm(sql_url, 5)
    engine = sa.create_engine(sql_url)
    adapter = SqlAdapter("crm", sql_url, {"contacts": SqlCollection("contacts")})
    write = adapter.write

    def someone_edits_first(collection, writes):
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE contacts SET n = 1000 WHERE id = '00001'"))
        return write(collection, writes)

    adapter.write = someone_edits_first
    changes = [
        Change(Address("crm", "contacts", f"{i:05d}"), "update", values={"n": 1}) for i in range(5)
    ]
    outcomes = Run(open_ledger(str(tmp_path / "l.db")), "b").apply(
        Target(adapter, "contacts"), changes
    )
    assert [o.status for o in outcomes] == ["applied", "stale", "applied", "applied", "applied"]
    assert (outcomes[1].field, outcomes[1].expected, outcomes[1].actual) == ("n", 0, 1000)
    with engine.connect() as connection:
        assert (
            connection.execute(sa.text("SELECT n FROM contacts WHERE id = '00001'")).scalar()
            == 1000
        )
    engine.dispose()
    adapter.close()
