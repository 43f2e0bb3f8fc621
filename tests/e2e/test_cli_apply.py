"""`ledger apply` as a user reruns it: a batch with refused or unapplied lines stays open for
the fixed lines, a canary says what it applied and what is left, and a line that contradicts
an option is refused before anything is written."""

import contextlib
import json
import sqlite3

import pytest
from fixtures.cli import crm_workspace


@pytest.fixture
def crm(tmp_path):
    return crm_workspace(tmp_path, [str(i) for i in range(1, 6)], catch_exceptions=False)


def stages(tmp_path):
    with contextlib.closing(sqlite3.connect(tmp_path / "crm.db")) as db:
        return dict(db.execute("SELECT id, stage FROM contacts ORDER BY id").fetchall())


def jsonl(path, *changes):
    path.write_text("".join(json.dumps(c) + "\n" for c in changes))
    return path


def update(key, stage, **extra):
    return {"entity": f"crm/contacts/{key}", "op": "update", "set": {"stage": stage}, **extra}


def batch(invoke, name):
    return next(b for b in json.loads(invoke("batches", "--json").stdout) if b["batch"] == name)


def test_a_batch_with_a_refused_line_stays_open_and_takes_the_fixed_line(crm, tmp_path):
    path = jsonl(
        tmp_path / "c.jsonl", update("1", "sql"), update("2", "sql", expected={"stage": "mql"})
    )
    first = crm("apply", path, "--system", "crm", "--batch", "run-1")
    assert first.exit_code == 3
    assert "batch run-1 stays open" in first.stdout
    assert batch(crm, "run-1")["status"] == "open"
    fixed = jsonl(
        tmp_path / "c.jsonl", update("1", "sql"), update("2", "sql", expected={"stage": "lead"})
    )
    again = crm("apply", fixed, "--system", "crm", "--batch", "run-1", "--json")
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert (summary["counts"], summary["closed"]) == ({"already_applied": 1, "applied": 1}, True)
    assert (batch(crm, "run-1")["status"], batch(crm, "run-1")["actions"]) == ("closed", 2)
    assert stages(tmp_path)["2"] == "sql"


def test_a_canary_says_what_it_applied_and_what_is_left(crm, tmp_path):
    path = jsonl(tmp_path / "c.jsonl", *(update(k, "sql") for k in "12345"))
    canary = crm("apply", path, "--system", "crm", "--batch", "run-1", "--limit", "2")
    assert canary.exit_code == 2, canary.output
    assert "batch run-1: 2 applied" in canary.stdout
    assert "stopped at the canary limit of 2 action(s): 3 change(s) left" in canary.stdout
    assert "Error" not in canary.output
    assert list(stages(tmp_path).values()) == ["sql", "sql", "lead", "lead", "lead"]
    assert batch(crm, "run-1")["status"] == "open"
    rest = json.loads(crm("apply", path, "--system", "crm", "--batch", "run-1", "--json").stdout)
    assert (rest["counts"], rest["left"], rest["closed"]) == (
        {"already_applied": 2, "applied": 3},
        0,
        True,
    )


def test_stop_on_stale_says_what_was_applied_refused_and_left(crm, tmp_path):
    path = jsonl(
        tmp_path / "c.jsonl",
        update("1", "sql"),
        update("2", "sql", expected={"stage": "mql"}),
        update("3", "sql"),
    )
    result = crm("apply", path, "--system", "crm", "--batch", "b", "--stop-on-stale", "--json")
    assert result.exit_code == 3
    summary = json.loads(result.stdout)
    assert summary["stopped"] == "stale" and summary["closed"] is False
    assert [(r["entity"], r["field"], r["actual"]) for r in summary["refused"]] == [
        ("crm/contacts/2", "stage", "lead")
    ]


def test_a_line_naming_another_batch_than_the_option_is_refused_before_any_write(crm, tmp_path):
    path = jsonl(tmp_path / "c.jsonl", update("1", "sql"), update("2", "sql", batch="X"))
    result = crm("apply", path, "--system", "crm", "--batch", "Y")
    assert result.exit_code == 1
    assert "line 2: crm/contacts/2: the change says batch 'X' but --batch says 'Y'" in result.output
    assert set(stages(tmp_path).values()) == {"lead"}
    assert json.loads(crm("batches", "--json").stdout) == []
