"""Expected failures at the command line: one line naming what is wrong and what to do, never a
traceback, and the ledger and the target left as they were (or settled by a rerun)."""

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ledger.cli import main

LEDGER = [sys.executable, "-m", "ledger"]


@pytest.fixture
def crm(tmp_path):
    """A SQLite CRM, a ledger.toml naming it by a relative path, an initialised ledger, and a
    function running `ledger` on them in-process."""
    with contextlib.closing(sqlite3.connect(tmp_path / "crm.db")) as db:
        db.execute("CREATE TABLE contacts (id TEXT PRIMARY KEY, stage TEXT)")
        db.executemany("INSERT INTO contacts VALUES (?, 'lead')", [(str(i),) for i in range(1, 6)])
        db.commit()
    config = tmp_path / "ledger.toml"
    config.write_text(
        '[systems.crm]\ntype = "sql"\nurl = "sqlite:///crm.db"\n'
        'collections.contacts = { key = "id" }\n'
    )
    db = str(tmp_path / "ledger.db")
    runner = CliRunner(env={"LEDGER_CONFIG": str(config), "LEDGER_DB": db})

    def invoke(*args, input=None):
        return runner.invoke(main, args, input=input)

    assert invoke("init").exit_code == 0
    return invoke


def stages(tmp_path):
    with contextlib.closing(sqlite3.connect(tmp_path / "crm.db")) as db:
        return dict(db.execute("SELECT id, stage FROM contacts ORDER BY id").fetchall())


def changes(path, *keys, **values):
    path.write_text(
        "".join(
            json.dumps({"entity": f"crm/contacts/{k}", "op": "update", "set": values}) + "\n"
            for k in keys
        )
    )
    return str(path)


def one_error_line(result):
    """The one line of an expected failure (a progress bar's label may come before it)."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and result.output.endswith(errors[0] + "\n"), result.output
    return errors[0]


# Targets ------------------------------------------------------------------------------------


@pytest.mark.slow  # the SQL adapter waits 30 s for another writer's lock before it gives up
def test_a_locked_target_fails_in_one_line_and_a_rerun_applies_once(crm, tmp_path):
    path = changes(tmp_path / "c.jsonl", "1", "2", stage="sql")
    with contextlib.closing(sqlite3.connect(tmp_path / "crm.db", isolation_level=None)) as lock:
        lock.execute("BEGIN IMMEDIATE")  # someone else is writing to the CRM
        line = one_error_line(crm("apply", path, "--system", "crm", "--batch", "b"))
        lock.execute("ROLLBACK")
    assert "database is locked" in line and "run the command again" in line
    assert stages(tmp_path)["1"] == "lead"
    again = crm("apply", path, "--system", "crm", "--batch", "b", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["counts"] == {"applied": 2}
    history = json.loads(crm("history", "crm/contacts/1", "--json").stdout)
    assert [a["operation"] for a in history] == ["track", "update"]


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_postgres_target_fails_in_one_line(crm, tmp_path):
    (tmp_path / "ledger.toml").write_text(
        f'[systems.crm]\ntype = "sql"\nurl = "postgresql://u@127.0.0.1:{closed_port()}/crm"\n'
        'collections.contacts = { key = "id" }\n'
    )
    path = changes(tmp_path / "c.jsonl", "1", stage="sql")
    line = one_error_line(crm("apply", path, "--system", "crm", "--batch", "b"))
    assert "a target database failed" in line and "Connection refused" in line


# Input that is not UTF-8 --------------------------------------------------------------------


def test_an_input_file_that_is_not_utf8_is_refused_naming_the_line(crm, tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(
        b'{"entity": "crm/contacts/1", "op": "update", "set": {"stage": "sql"}}\n'
        b'{"entity": "crm/contacts/2", "op": "update", "set": {"stage": "caf\xe9"}}\n'
    )
    for command in (["import", str(path)], ["apply", str(path), "--system", "crm", "--batch", "b"]):
        line = one_error_line(crm(*command))
        assert f"line 2: {path} is not UTF-8 text (byte 0xe9 at column 67)" in line
    assert stages(tmp_path)["1"] == "lead"
    assert crm("history", "crm/contacts/1").exit_code == 1  # nothing recorded


def test_a_change_on_stdin_or_an_argument_that_is_not_utf8_is_refused(crm):
    stdin = crm("record", "-", input=b'{"entity": "crm/c/1", "op": "create", "set": {"a": "\xff"}}')
    assert "stdin is not UTF-8 text" in one_error_line(stdin)
    argument = crm("record", "--entity", "crm/c/1", "--op", "create", "--set", "a=\udcff")
    assert "--set 'a=\\udcff' is not UTF-8 text" in one_error_line(argument)


# The ledger's own database ------------------------------------------------------------------


@contextlib.contextmanager
def read_only(path):
    """The file cannot be written, even by root (who ignores its mode): immutable if we are."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        yield
        path.chmod(0o644)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a file immutable here (chattr)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_ledger_is_read_but_a_write_fails_in_one_line(crm, tmp_path):
    record = ["record", "--entity", "crm/contacts/1", "--op", "create", "--set", "a=1"]
    assert crm(*record).exit_code == 0
    with read_only(tmp_path / "ledger.db"):
        assert crm("batches").exit_code == 0
        record[2] = "crm/contacts/2"
        line = one_error_line(crm(*record))
    assert line.startswith("Error: the ledger's database")
    assert "readonly database" in line and "permissions" in line
    assert crm("history", "crm/contacts/2").exit_code == 1


# Output -------------------------------------------------------------------------------------


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    db = str(tmp_path / "ledger.db")
    subprocess.run([*LEDGER, "init", "--db", db], check=True, capture_output=True)
    path = tmp_path / "many.jsonl"
    path.write_text(
        "".join(
            json.dumps({"entity": f"crm/contacts/{i}", "op": "create", "set": {"n": i}}) + "\n"
            for i in range(3000)
        )
    )
    subprocess.run([*LEDGER, "import", str(path), "--db", db], check=True, capture_output=True)
    for command in (["collection", "crm/contacts"], ["collection", "crm/contacts", "--json"]):
        ledger = subprocess.Popen(
            [*LEDGER, *command, "--db", db], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        head = subprocess.run(["head", "-1"], stdin=ledger.stdout, capture_output=True)
        ledger.stdout.close()  # only `head` reads it now, and it has gone
        errors = ledger.stderr.read().decode()
        assert ledger.wait() == 1 and errors == "", errors
        assert head.stdout.count(b"\n") == 1
