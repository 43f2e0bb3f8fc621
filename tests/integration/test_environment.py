"""The ledger owns its environment: variables the eventsourcing library would read from
`os.environ` change nothing; only the ones the docs name (LEDGER_DB, LEDGER_CONFIG) do."""

import json
import os
import subprocess
import sys

from ledger import Address, Change, open_ledger

# Each would redirect, reshape or disable the store if the library read it.
HOSTILE = {
    "LEDGER_SQLITE_DBNAME": "{tmp}/elsewhere.db",
    "SQLITE_DBNAME": "{tmp}/elsewhere.db",
    "LEDGER_PERSISTENCE_MODULE": "eventsourcing.popo",
    "PERSISTENCE_MODULE": "eventsourcing.popo",
    "POSTGRES_ENABLE_DB_FUNCTIONS": "y",
    "LEDGER_POSTGRES_ENABLE_DB_FUNCTIONS": "y",
    "LEDGER_POSTGRES_SCHEMA": "elsewhere",
    "LEDGER_POSTGRES_DBNAME": "elsewhere",
    "LEDGER_CREATE_TABLE": "n",
    "COMPRESSOR_TOPIC": "zlib",
    "LEDGER_IS_SNAPSHOTTING_ENABLED": "n",
}

CONTACT = Address.parse("crm/contacts/1")


def test_library_variables_neither_move_nor_reshape_the_store(db_url, tmp_path, monkeypatch):
    for name, value in HOSTILE.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    ledger = open_ledger(db_url)
    ledger.record(Change(CONTACT, "create", values={"stage": "lead"}), batch="b")
    ledger.record(Change(CONTACT, "update", values={"stage": "sql"}), batch="b")
    ledger.close()
    assert not (tmp_path / "elsewhere.db").exists()
    for name in HOSTILE:
        monkeypatch.delenv(name)
    again = open_ledger(db_url, create=False)
    try:
        # Readable without the variables, and every event has its index row (position).
        assert again.state(CONTACT).fields == {"stage": "sql"}
        assert [a.position is not None for a in again.history(CONTACT)] == [True, True]
        assert again.batch_view("b").actions == 2
    finally:
        again.close()


def test_the_command_ignores_them_too_and_keeps_utc_times(tmp_path):
    env = {
        **os.environ,
        **{name: value.format(tmp=tmp_path) for name, value in HOSTILE.items()},
        "TZINFO_TOPIC": "nope:not_a_timezone",  # read by the library when first imported
        "LEDGER_DB": str(tmp_path / "ledger.db"),
    }
    ledger = [sys.executable, "-m", "ledger"]
    for args in (
        ["init"],
        ["record", "--entity", "crm/contacts/1", "--op", "create", "--set", "a=1"],
    ):
        result = subprocess.run([*ledger, *args], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    history = subprocess.run(
        [*ledger, "history", "crm/contacts/1", "--json"], env=env, capture_output=True, text=True
    )
    assert history.returncode == 0, history.stderr
    assert json.loads(history.stdout)[0]["recorded_at"].endswith("+00:00")
    assert not (tmp_path / "elsewhere.db").exists()
