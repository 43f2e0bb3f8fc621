"""The eventsourcing library's own persistence contract, run against the ledger's store.

`eventsourcing.tests.persistence` ships the test cases every recorder, factory and
transcoder of the library must pass. Here they run against exactly what the ledger uses:

- the recorders built by the ledger's factories from `store_env(db)` (so
  `SQLiteLedgerRecorder` on a `DurableSQLiteConnectionPool`, `PostgresLedgerRecorder`
  with the ledger's pool settings), on a fresh SQLite file or PostgreSQL database per test;
- the aggregate recorder the application builds for its snapshots;
- the factories themselves (`InfrastructureFactoryTestCase`);
- `OrjsonTranscoder` (`TranscoderTestCase`).

The library's abstract cases are reached through the module (``contract.X``) rather than
imported by name: pytest collects every `unittest.TestCase` subclass in a test module.

Then the ledger's own additions to the contract: index rows commit or roll back with their
events, every SQLite connection is in WAL mode with ``synchronous=FULL``, and a recorded
action survives its process dying without closing anything.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    IntegrityError,
    ProcessRecorder,
    StoredEvent,
    TrackingRecorder,
    Transcoder,
    Transcoding,
)
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresProcessRecorder,
    PostgresTrackingRecorder,
)
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteProcessRecorder,
    SQLiteTrackingRecorder,
)
from eventsourcing.tests import persistence as contract
from eventsourcing.utils import Environment

from ledger import Address, Change, Ledger, open_ledger
from ledger.bootstrap import store_env
from ledger.store import IndexedAction, IndexEntry, SaveContext
from ledger.store import postgres as postgres_store
from ledger.store import sqlite as sqlite_store
from ledger.store.keyfile import create_key_files
from ledger.transcoder import OrjsonTranscoder

REPO_ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def signing_key() -> Path:
    """One signing key for the stores built here (every save signs the tree's head)."""
    path = Path(tempfile.mkdtemp(prefix="ledger-key-")) / "ledger.key"
    create_key_files(path)
    return path


def construct_factory(db: str, name: str = Ledger.name) -> InfrastructureFactory[Any]:
    """The factory the ledger's application would build for this database setting."""
    return InfrastructureFactory.construct(Environment(name, store_env(db, signing_key())))


# Where each test's store lives --------------------------------------------------------------


class _Store:
    """Per test: the factories opened on a fresh database, closed once the test is over."""

    db: str
    factories: list[InfrastructureFactory[Any]]

    def _use(self, db: str) -> Iterator[None]:
        self.db = db
        self.factories = []
        before = set(threading.enumerate())
        yield
        # The library's test_concurrent_no_conflicts sets its reader threads' stop event
        # but does not join them. Closing the pool closes connections still in use, and
        # closing an SQLite connection while another thread runs a query on it can crash
        # the interpreter (seen: SIGSEGV in sqlite3's execute), so wait for them first.
        for thread in set(threading.enumerate()) - before:
            if not thread.daemon:
                thread.join(timeout=30)
        for factory in self.factories:
            factory.close()

    def factory(self) -> InfrastructureFactory[Any]:
        factory = construct_factory(self.db)
        self.factories.append(factory)
        return factory


class SQLiteStore(_Store):
    """A fresh SQLite file per test, opened through the ledger's factory."""

    @pytest.fixture(autouse=True)
    def _sqlite_store(self, tmp_path: Path) -> Iterator[None]:
        yield from self._use(str(tmp_path / "ledger.db"))


@pytest.mark.postgres
class PostgresStore(_Store):
    """A fresh PostgreSQL database per test (dropped by the fixture after the factories
    are closed), opened through the ledger's factory."""

    @pytest.fixture(autouse=True)
    def _postgres_store(self, postgres_url: str) -> Iterator[None]:
        yield from self._use(postgres_url)


# ApplicationRecorderTestCase: the events table and notification log ----------------------


class TestSQLiteLedgerRecorder(SQLiteStore, contract.ApplicationRecorderTestCase):
    """All the contract's tests, on the ledger's durable file database, including
    test_concurrent_no_conflicts (10 writer threads, 100 writes of 100 events, 2 readers)
    and test_concurrent_throughput. Not run, as they are not in the contract: the library's
    in-memory variants (the ledger never uses an in-memory database) and
    optional_test_insert_subscribe (the library's SQLite recorder has no subscriptions)."""

    def create_recorder(self) -> ApplicationRecorder:
        recorder = self.factory().application_recorder()
        assert type(recorder) is sqlite_store.SQLiteLedgerRecorder
        assert isinstance(recorder.datastore.pool, sqlite_store.DurableSQLiteConnectionPool)
        return recorder


class TestPostgresLedgerRecorder(PostgresStore, contract.ApplicationRecorderTestCase):
    """With the ledger's pool (POSTGRES_POOL_SIZE=2, library default overflow): unlike the
    library's own test, the pool is not resized for the concurrency tests."""

    def create_recorder(self) -> ApplicationRecorder:
        recorder = self.factory().application_recorder()
        assert type(recorder) is postgres_store.PostgresLedgerRecorder
        return recorder

    def test_insert_subscribe(self) -> None:
        # Optional in the contract; the library runs it for its PostgreSQL recorder.
        self.optional_test_insert_subscribe()


# NonInterleavingNotificationIDsBaseCase: concurrent writers never interleave ids -----------


class TestSQLiteNonInterleaving(SQLiteStore, contract.NonInterleavingNotificationIDsBaseCase):
    def create_recorder(self) -> ApplicationRecorder:
        return self.factory().application_recorder()


class TestPostgresNonInterleaving(PostgresStore, contract.NonInterleavingNotificationIDsBaseCase):
    """The guarantee ledger/store/postgres.py relies on (EXCLUSIVE lock while inserting)."""

    def create_recorder(self) -> ApplicationRecorder:
        return self.factory().application_recorder()


# AggregateRecorderTestCase: the snapshot store the application builds -----------------------


class TestSQLiteSnapshotRecorder(SQLiteStore, contract.AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        recorder = self.factory().aggregate_recorder(purpose="snapshots")
        assert type(recorder) is SQLiteAggregateRecorder
        return recorder


class TestPostgresSnapshotRecorder(PostgresStore, contract.AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        recorder = self.factory().aggregate_recorder(purpose="snapshots")
        assert type(recorder) is PostgresAggregateRecorder
        return recorder


# InfrastructureFactoryTestCase: the factories named by PERSISTENCE_MODULE ------------------


class SQLiteTrackingRecorderSubclass(SQLiteTrackingRecorder):
    pass


class PostgresTrackingRecorderSubclass(PostgresTrackingRecorder):
    pass


class TestSQLiteLedgerFactory(contract.InfrastructureFactoryTestCase[sqlite_store.Factory]):
    @pytest.fixture(autouse=True)
    def _env(self, tmp_path: Path) -> None:
        # Runs before setUp(), which constructs the factory from self.env.
        self.env = Environment(Ledger.name, store_env(str(tmp_path / "ledger.db"), signing_key()))

    def expected_factory_class(self) -> type[sqlite_store.Factory]:
        return sqlite_store.Factory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return SQLiteAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return sqlite_store.SQLiteLedgerRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return SQLiteTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return SQLiteTrackingRecorderSubclass

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return SQLiteProcessRecorder

    def test_keeps_lock_timeout_with_durable_pool(self) -> None:
        # The factory swaps the library's pool for the durable one: nothing else may change.
        pool = self.factory.datastore.pool
        assert isinstance(pool, sqlite_store.DurableSQLiteConnectionPool)
        assert pool.lock_timeout == int(store_env("x.db")["SQLITE_LOCK_TIMEOUT"])
        assert pool.db_name == self.env["SQLITE_DBNAME"]


@pytest.mark.postgres
class TestPostgresLedgerFactory(contract.InfrastructureFactoryTestCase[postgres_store.Factory]):
    @pytest.fixture(autouse=True)
    def _env(self, postgres_url: str) -> None:
        self.env = Environment(Ledger.name, store_env(postgres_url, signing_key()))

    def expected_factory_class(self) -> type[postgres_store.Factory]:
        return postgres_store.Factory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return PostgresAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return postgres_store.PostgresLedgerRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return PostgresTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return PostgresTrackingRecorderSubclass

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return PostgresProcessRecorder


# TranscoderTestCase: OrjsonTranscoder ------------------------------------------------------


class MydictAsDict(Transcoding):
    type = contract.Mydict
    name = "mydict"

    def encode(self, obj: Any) -> dict[Any, Any]:
        return dict(obj)

    def decode(self, data: Any) -> Any:
        return contract.Mydict(data)


class MyListAsList(Transcoding):
    type = contract.MyList
    name = "mylist"

    def encode(self, obj: Any) -> list[Any]:
        return list(obj)

    def decode(self, data: Any) -> Any:
        return contract.MyList(data)


class MyStrAsStr(Transcoding):
    type = contract.MyStr
    name = "mystr"

    def encode(self, obj: Any) -> str:
        return str(obj)

    def decode(self, data: Any) -> Any:
        return contract.MyStr(data)


class MyIntAsInt(Transcoding):
    type = contract.MyInt
    name = "myint"

    def encode(self, obj: Any) -> int:
        return int(obj)

    def decode(self, data: Any) -> Any:
        return contract.MyInt(data)


class TestOrjsonTranscoder(contract.TranscoderTestCase):
    """No test is skipped: unlike the library's JSONTranscoder, ours keeps tuples and
    (given transcodings) subclasses of dict, list, str and int."""

    def construct_transcoder(self) -> Transcoder:
        # As the library's transcoder tests register them. UUIDAsHex ("uuid_hex") and
        # TupleAsList ("tuple_as_list") are built into OrjsonTranscoder under the same
        # names, so they are not registered again.
        transcoder = OrjsonTranscoder()
        for transcoding in (
            contract.CustomType1AsDict(),
            contract.CustomType2AsDict(),
            MydictAsDict(),
            MyListAsList(),
            MyStrAsStr(),
            MyIntAsInt(),
        ):
            transcoder.register(transcoding)
        return transcoder


# The ledger's additions: the action index is written in the events' transaction ------------


def _entry(fingerprint: str) -> IndexEntry:
    return IndexEntry(
        system="crm",
        collection="contacts",
        key=fingerprint,
        operation="create",
        batch="contract",
        workflow=None,
        recorded_at=1,
        effective_at=None,
        fingerprint=fingerprint,
    )


def _event(originator_id: UUID | None = None) -> StoredEvent:
    return StoredEvent(originator_id or uuid4(), 1, "topic", b"{}")


def test_index_rows_commit_and_roll_back_with_their_events(db_url: str) -> None:
    factory = construct_factory(db_url)
    try:
        recorder: Any = factory.application_recorder()
        first_id = uuid4()
        first = _event(first_id)
        (position,) = recorder.insert_events(
            [first], context=SaveContext(actions={(first.originator_id, 1): _entry("fp-1")})
        )
        assert recorder.find_fingerprints(["fp-1"]) == {
            "fp-1": IndexedAction(first_id, 1, position)
        }

        # A fingerprint already recorded: the new event is refused with it.
        again = _event()
        with pytest.raises(IntegrityError):
            recorder.insert_events(
                [again], context=SaveContext(actions={(again.originator_id, 1): _entry("fp-1")})
            )
        assert recorder.select_events(again.originator_id) == []

        # An event that conflicts: the other event and both index rows are refused with it.
        fresh, clash = _event(), _event(first_id)
        with pytest.raises(IntegrityError):
            recorder.insert_events(
                [fresh, clash],
                context=SaveContext(
                    actions={
                        (fresh.originator_id, 1): _entry("fp-2"),
                        (clash.originator_id, 1): _entry("fp-3"),
                    }
                ),
            )
        assert recorder.select_events(fresh.originator_id) == []
        assert recorder.find_fingerprints(["fp-2", "fp-3"]) == {}
        assert recorder.max_notification_id() == position
    finally:
        factory.close()


def test_error_while_indexing_rolls_back_the_events(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any error while the index rows are built must leave nothing stored."""
    factory = construct_factory(db_url)
    try:
        recorder: Any = factory.application_recorder()

        def fail(*args: Any) -> Any:
            raise RuntimeError("failed while building index rows")

        monkeypatch.setattr(recorder, "index_rows", fail)
        event = _event()
        # SQLite re-raises the error itself; on PostgreSQL the recorder aborts the
        # transaction in the database, and that abort is what surfaces.
        with pytest.raises(Exception, match="index rows"):
            recorder.insert_events(
                [event], context=SaveContext(actions={(event.originator_id, 1): _entry("fp")})
            )
        assert recorder.select_events(event.originator_id) == []
        assert recorder.max_notification_id() is None
    finally:
        factory.close()


# Durability of the SQLite store ---------------------------------------------------------


def _pragma(cursor: Any, name: str) -> Any:
    cursor.execute(f"PRAGMA {name}")
    return cursor.fetchone()[0]


def test_sqlite_ledger_connections_are_wal_and_synchronous_full(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.db")
    ledger = open_ledger(path)
    try:
        ledger.record(Change(Address.parse("crm/contacts/1"), "create", values={"n": 1}))
        datastore = ledger.factory.datastore  # type: ignore[attr-defined]
        assert ledger.recorder.datastore is datastore  # type: ignore[attr-defined]
        pool = datastore.pool
        assert isinstance(pool, sqlite_store.DurableSQLiteConnectionPool)

        # Through the recorder's own transactions, for writing and for reading...
        for commit in (True, False):
            with datastore.transaction(commit=commit) as cursor:
                assert _pragma(cursor, "journal_mode") == "wal"
                assert _pragma(cursor, "synchronous") == 2  # FULL

        # ...and on every connection when several are open at once (new ones are made).
        connections = [pool.get_connection(is_writer=w) for w in (True, False, False, None)]
        try:
            assert len({id(c) for c in connections}) == 4
            for connection in connections:
                raw = connection._sqlite_conn
                assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2
        finally:
            for connection in connections:
                pool.put_connection(connection)
    finally:
        ledger.close()

    # WAL is a property of the file: any later opener finds it.
    with sqlite3.connect(path) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


_RECORD_AND_DIE = textwrap.dedent(
    """
    import os, sys
    from ledger import Address, Change, open_ledger

    ledger = open_ledger(sys.argv[1])
    change = Change(Address.parse("crm/contacts/42"), "create", values={"stage": "lead"})
    receipt = ledger.record(change, batch="crash-test")
    print(receipt.action.position, flush=True)
    os._exit(0)  # no close(), no checkpoint, no atexit handlers
    """
)


def test_recorded_action_survives_the_process_dying(db_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _RECORD_AND_DIE, db_url],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    position = int(result.stdout.strip())
    if "://" not in db_url:
        # The commit is still only in the write-ahead log, which a clean close would
        # have checkpointed into the database file and removed.
        assert Path(db_url + "-wal").stat().st_size > 0

    ledger = open_ledger(db_url, create=False)
    try:
        address = Address.parse("crm/contacts/42")
        state = ledger.state(address)
        assert (state.exists, state.fields, state.version) == (True, {"stage": "lead"}, 1)
        assert state.position == position
        assert [action.batch for action in ledger.history(address)] == ["crash-test"]
        assert ledger.batch_view("crash-test").actions == 1
    finally:
        ledger.close()


def test_a_save_given_anything_but_its_context_stores_nothing(db_url: str) -> None:
    """The rows that go with events travel as one typed `SaveContext`; a string-keyed argument
    (the old ``actions=`` / ``pending_add=``) fails before any event is stored, where it would
    have stored events without their index rows."""
    factory = construct_factory(db_url)
    try:
        recorder: Any = factory.application_recorder()
        event = _event()
        with pytest.raises(TypeError, match="SaveContext"):
            recorder.insert_events([event], actions={(event.originator_id, 1): _entry("fp")})
        with pytest.raises(TypeError, match="SaveContext"):
            recorder.insert_events([event], context={(event.originator_id, 1): _entry("fp")})
        assert recorder.select_events(event.originator_id) == []
        assert recorder.max_notification_id() is None
    finally:
        factory.close()
    ledger = open_ledger(db_url)
    try:
        change = Change(Address.parse("crm/contacts/1"), "create", values={"n": 1})
        with pytest.raises(TypeError, match="SaveContext"):
            ledger.save(*[], pending_add=[])
        ledger.record(change)
        assert ledger.state(change.address).fields == {"n": 1}
    finally:
        ledger.close()
