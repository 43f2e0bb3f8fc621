"""Opening the ledger's store: only a new or empty database, or one that holds a ledger, and
a store that cannot be used says why in one line, at once."""

import contextlib
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from ledger import ConfigurationError, StoreUnavailable, open_ledger
from ledger.cli import main


def tables(path):
    return {row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}


@pytest.fixture
def crm_file(tmp_path):
    path = tmp_path / "crm.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, stage TEXT)")
        db.commit()
    return path


@pytest.mark.parametrize("command", [["init"], ["batches"]])
def test_a_sqlite_file_holding_other_tables_is_refused_and_left_alone(crm_file, command):
    result = CliRunner().invoke(main, [*command, "--db", str(crm_file)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: LEDGER_DB / --db")
    assert "holds tables that are not a ledger's (contacts)" in result.output
    assert tables(crm_file) == {"contacts"}


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("not a database\n" * 20)
    result = CliRunner().invoke(main, ["init", "--db", str(path)])
    assert result.exit_code == 1
    assert "is not a SQLite database" in result.output
    assert path.read_text() == "not a database\n" * 20


def test_a_new_empty_or_existing_ledger_file_is_opened(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    for path in (tmp_path / "new.db", empty):
        open_ledger(str(path)).close()
        open_ledger(str(path), create=False).close()  # now a ledger: opened again
        assert "ledger_actions" in tables(path)


def test_only_init_creates_a_ledger_in_a_postgres_schema(postgres_url):
    url = postgres_url + "?schema=ledger"
    with pytest.raises(ConfigurationError, match=r"no ledger in .*schema 'ledger'.*ledger init"):
        open_ledger(url, create=False)
    open_ledger(url).close()  # init: creates the schema and the ledger's tables
    open_ledger(url, create=False).close()


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_postgres_fails_at_once_in_one_line_with_its_reason():
    url = f"postgresql://postgres:secret@127.0.0.1:{closed_port()}/ledger"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "ledger", "batches", "--db", url], capture_output=True, text=True
    )
    assert time.monotonic() - started < 10  # the library's pool waited 30 s, then 65 lines
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Connection refused" in lines[0] and "secret" not in lines[0]


def test_an_unknown_postgres_url_option_is_refused_naming_it():
    with pytest.raises(ConfigurationError, match="unknown URL option 'sslmod'"):
        open_ledger("postgresql://u@127.0.0.1/db?sslmod=require")
    with pytest.raises(ConfigurationError, match="connect_timeout='soon'"):
        open_ledger("postgresql://u@127.0.0.1/db?connect_timeout=soon")


def test_store_failures_are_ledger_errors(tmp_path):
    assert issubclass(StoreUnavailable, Exception)
    with pytest.raises(StoreUnavailable, match="Connection refused"):
        open_ledger(f"postgresql://u@127.0.0.1:{closed_port()}/x")
