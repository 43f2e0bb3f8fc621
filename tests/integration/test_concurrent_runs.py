"""Two runs on the same records at once (two `ledger apply` of one batch, or two workflows):
each record is read, written and settled by one run at a time, so no run mistakes another's
unsettled write for an outside edit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlalchemy as sa
from crm_tables import make_contacts

from adapters.sql import SqlAdapter, SqlCollection
from ledger import Address, Change, Run, Target, open_ledger
from ledger.ports import Record, Write, WriteResult
from ledger.store.locks import file_record_locks


class _Hooked:
    """The SQL adapter with hooks around its reads and writes, to interleave two runs."""

    def __init__(self, adapter: SqlAdapter) -> None:
        self._adapter = adapter
        self.system = adapter.system
        self.before_read: Callable[[], None] = lambda: None
        self.after_read: Callable[[], None] = lambda: None
        self.after_write: Callable[[], None] = lambda: None

    def __getattr__(self, name: str) -> object:
        return getattr(self._adapter, name)

    def read(self, collection: str, keys: Sequence[str]) -> dict[str, Record | None]:
        self.before_read()
        found = self._adapter.read(collection, keys)
        self.after_read()
        return found

    def write(self, collection: str, writes: Sequence[Write]) -> list[WriteResult]:
        results = self._adapter.write(collection, writes)
        self.after_write()
        return results


PATIENCE = 1.5  # seconds a hook waits for a step that record locks rightly prevent


def test_two_runs_of_one_batch_record_each_write_once_and_adopt_nothing(
    db_url: str, tmp_path: Path
) -> None:
    """The interleaving that broke: the second run checks for unsettled writes before the
    first declares any, and reads the target after the first wrote but before it settled."""
    crm = f"sqlite:///{tmp_path / 'crm.db'}"
    make_contacts(crm, 20, stage="lead").dispose()
    ledger = open_ledger(db_url)
    changes = [
        Change(Address("crm", "contacts", f"{i:05d}"), "update", values={"stage": "customer"})
        for i in range(20)
    ]
    second_reading, first_wrote, second_read = (threading.Event() for _ in range(3))
    first = _Hooked(SqlAdapter("crm", crm, {"contacts": SqlCollection("contacts")}))
    second = _Hooked(SqlAdapter("crm", crm, {"contacts": SqlCollection("contacts")}))
    first.before_read = lambda: second_reading.wait(PATIENCE)
    first.after_write = lambda: (first_wrote.set(), second_read.wait(PATIENCE))
    second.before_read = lambda: (second_reading.set(), first_wrote.wait(PATIENCE))
    second.after_read = second_read.set
    statuses: dict[str, list[str]] = {}

    def run(name: str, adapter: _Hooked) -> None:
        outcomes = Run(ledger, "lead-sync-1", workflow="lead-sync").apply(
            Target(adapter, "contacts"),  # type: ignore[arg-type]
            changes,
        )
        statuses[name] = [outcome.status for outcome in outcomes]

    threads = [
        threading.Thread(target=run, args=("first", first)),
        threading.Thread(target=run, args=("second", second)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted([statuses["first"], statuses["second"]]) == [
        ["already_applied"] * 20,
        ["applied"] * 20,
    ]
    for i in range(20):
        history = ledger.history(Address("crm", "contacts", f"{i:05d}"))
        assert [(a.operation, a.batch, a.actor, a.after) for a in history] == [
            ("track", "observed", "external", {"stage": "lead"}),  # first seen, whole
            ("update", "lead-sync-1", None, {"stage": "customer"}),
        ]
    assert ledger.index.pending() == []


def test_a_record_lock_is_held_against_another_process(tmp_path: Path) -> None:
    ledger_file = str(tmp_path / "ledger.db")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from ledger.store.locks import file_record_locks
                with file_record_locks({ledger_file!r}, ["crm/contacts/1"]):
                    print("held", flush=True)
                    sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "held"
    acquired = threading.Event()

    def take() -> None:
        with file_record_locks(ledger_file, ["crm/contacts/1"]):
            acquired.set()

    taker = threading.Thread(target=take)
    taker.start()
    assert not acquired.wait(0.5)  # still held by the other process
    with file_record_locks(ledger_file, ["crm/contacts/2"]):
        pass  # another record is free meanwhile
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert acquired.wait(30)
    taker.join()
    holder.wait(10)


def test_the_sql_engine_behind_the_adapter_is_unchanged_by_locking(tmp_path: Path) -> None:
    """Locks live beside the ledger, never in the target database."""
    crm = tmp_path / "crm.db"
    make_contacts(f"sqlite:///{crm}", 1, stage="lead").dispose()
    with file_record_locks(str(tmp_path / "ledger.db"), ["crm/contacts/00000"]):
        tables = sa.inspect(sa.create_engine(f"sqlite:///{crm}")).get_table_names()
    assert tables == ["contacts"]


def test_record_locks_are_kept_only_while_records_are_locked(tmp_path: Path) -> None:
    """A long run (a million-change rollback) locks every record once: the process keeps no
    lock for a record nobody holds, while two threads still keep one record apart."""
    from ledger.store import locks

    ledger_file = str(tmp_path / "ledger.db")
    before = len(locks._thread_locks)
    for start in range(0, 3000, 1000):
        with file_record_locks(
            ledger_file, [f"crm/contacts/{i}" for i in range(start, start + 1000)]
        ):
            assert len(locks._thread_locks) == before + 1000
    assert len(locks._thread_locks) == before
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with file_record_locks(ledger_file, ["crm/contacts/1"]):
            inside.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(30)
    entered = threading.Event()

    def take() -> None:
        with file_record_locks(ledger_file, ["crm/contacts/1"]):
            entered.set()

    taker = threading.Thread(target=take)
    taker.start()
    assert not entered.wait(0.3)  # the same record, another thread: it waits
    release.set()
    assert entered.wait(30)
    holder.join()
    taker.join()
    assert len(locks._thread_locks) == before
