"""The library internals the ledger leans on are those of the pinned eventsourcing release.

`ledger/store/library_seams.py` mirrors or reaches into private steps of the library (and
the store subclasses its recorders' hooks). Each library function below is hashed as the
pinned release has it; when an upgrade changes one, the test names it and what to re-check,
so the seam is read again before anything is stored differently.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import eventsourcing.domain
import pytest
from eventsourcing.application import Application, ProcessingEvent, Repository, project_aggregate
from eventsourcing.persistence import EventStore, Mapper
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresFactory,
)
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteDatastore,
    SQLiteFactory,
)

PINNED = "9.5.6"
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

SAVE = "`save_aggregates` (Ledger.save) still does every step of Application.save"
INSERT = (
    "`copy_insert` and PostgresLedgerRecorder.insert_events, which replace the library's "
    "insert: events, leaves and index rows still commit together, ids in commit order"
)
TABLES = "the store's SQL (ledger/store/indexed.py) still matches the events tables' columns"

# (library function, sha256 of its source in the pinned release (first 16 hex), what to check)
LEANS_ON: list[tuple[Callable[..., Any], str, str]] = [
    (Application.construct_env, "0369ca377c1fb372", "`ledger_environment` mirrors it"),
    (Application.save, "4e9747d14b8fd046", SAVE),
    (Application._record, "104c6186b29d5059", SAVE + " and passes saved_kwargs to put()"),
    (ProcessingEvent.__init__, "a0682ee01c41601c", SAVE),
    (ProcessingEvent.collect_events, "7e3a7e6b1abd2bef", SAVE),
    (EventStore.put, "7cbbe45730a0d3b9", "the save context still reaches insert_events()"),
    (Repository._reconstruct_aggregate, "56d7c30cb77083be", "`project_aggregates` mirrors it"),
    (project_aggregate, "e2d05062a4fad31f", "`project_aggregates` mirrors it"),
    (Mapper.to_domain_event, "6ec02f2a3b6e233a", "`fields_decoder` still decodes as it does"),
    (
        eventsourcing.domain.BaseAggregate.trigger_event,
        "4724a6ca76a5c9ff",
        "`trigger_built` (ledger/_library.py) still does what it does to an aggregate",
    ),
    (
        eventsourcing.domain.CanInitAggregate.mutate,
        "e700ce4c152450bf",
        "`init_built` (ledger/_library.py) still makes the aggregate it makes",
    ),
    (SQLiteDatastore.__init__, "6f70a3c7d7e9d8ae", "`use_pool` may still replace its pool"),
    (
        SQLiteFactory.__init__,
        "31a496bb9dab899a",
        "the store's Factory still swaps the datastore (HoldingSQLiteDatastore) and the pool",
    ),
    (
        SQLiteDatastore.transaction,
        "20e2038a98e68bdd",
        "HoldingSQLiteDatastore.transaction: every transaction still comes through it",
    ),
    (
        SQLiteConnectionPool._create_connection,
        "4635cb356e9ae4ec",
        "`reopen_with_statement_cache` and DurableSQLiteConnectionPool (WAL, lock retries)",
    ),
    (SQLiteConnection.__init__, "64c8e0b8d06b728d", "`reopen_with_statement_cache`"),
    (
        SQLiteAggregateRecorder.insert_events,
        "32f60619a2ca6e6a",
        "SQLiteLedgerRecorder._insert_events still runs in the events' transaction",
    ),
    (
        SQLiteApplicationRecorder._insert_events,
        "413cdf219c7bae63",
        "`insert_numbered` still stores what it stores, returning the events' positions",
    ),
    (SQLiteAggregateRecorder.construct_create_table_statements, "940bfe1e379e780f", TABLES),
    (SQLiteApplicationRecorder.construct_create_table_statements, "0e52bba3d0092d39", TABLES),
    (PostgresAggregateRecorder.__init__, "78adbde8e22843ca", INSERT + "; " + TABLES),
    (PostgresApplicationRecorder.__init__, "db36fb3de49a5292", INSERT + "; " + TABLES),
    (PostgresApplicationRecorder.insert_events, "f1a98da0239e3ea7", INSERT),
    (PostgresApplicationRecorder._insert_stored_events, "139580714a659085", INSERT),
    (PostgresAggregateRecorder._insert_stored_events, "80327aa859e4cc55", INSERT),
    (PostgresApplicationRecorder._lock_table, "42bc9c135b4a93c1", INSERT),
    (PostgresApplicationRecorder._notify_channel, "9e5bab72ecfbcf2e", INSERT),
    (
        PostgresFactory.application_recorder,
        "b6fe3818818125cd",
        "the store's Factory still wraps it in its DDL lock",
    ),
    (
        PostgresFactory.aggregate_recorder,
        "79b5be3db77bd32c",
        "the store's Factory still wraps it in its DDL lock",
    ),
]


def _digest(function: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


def test_the_library_is_pinned_exactly_to_the_release_the_seams_were_checked_against() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = [r for r in requirements if r.startswith("eventsourcing")]
    assert pins, "pyproject.toml names no eventsourcing requirement"
    for pin in pins:
        assert re.fullmatch(rf"eventsourcing(\[[a-z,]+\])?=={re.escape(PINNED)}", pin), pin
    assert importlib.metadata.version("eventsourcing") == PINNED


@pytest.mark.parametrize(
    ("function", "digest", "recheck"),
    LEANS_ON,
    ids=[function.__qualname__ for function, _, _ in LEANS_ON],
)
def test_a_library_function_the_ledger_leans_on_is_unchanged(
    function: Callable[..., Any], digest: str, recheck: str
) -> None:
    found = _digest(function)
    assert found == digest, (
        f"eventsourcing changed {function.__module__}.{function.__qualname__} (source "
        f"sha256 {found}, was {digest} in {PINNED}); re-check {recheck} "
        "(ledger/store/library_seams.py), run tests/test_store_contract.py, then record "
        "the new digest here"
    )


def test_the_library_still_reads_its_timezone_at_import() -> None:
    """`ledger/_library.py` imports the library without ``TZINFO_TOPIC`` in the environment,
    because the library reads it once, at import, into the module's ``TZINFO``."""
    lines = inspect.getsource(eventsourcing.domain).splitlines()
    read = 'TZINFO: tzinfo = resolve_topic(os.getenv("TZINFO_TOPIC", "datetime:timezone.utc"))'
    assert read in lines, "re-check ledger/_library.py: the library reads TZINFO_TOPIC otherwise"


def test_an_action_built_directly_is_the_event_the_library_would_trigger() -> None:
    """`trigger_built` (Entity.record) makes the very event `trigger_event` makes: equal, the
    same stored bytes, read back equal, the aggregate moved on alike; a missing field is
    refused before the aggregate changes. `init_built` makes the library's aggregate."""
    from datetime import UTC, datetime

    from ledger.domain import Address, Entity
    from ledger.transcoder import OrjsonTranscoder

    mapper: Mapper[Any] = Mapper(transcoder=OrjsonTranscoder())
    address = Address("crm", "contacts", "42")
    action: dict[str, Any] = {
        "operation": "create",
        "before": {},
        "after": {"stage": "lead"},
        "compensation": {"operation": "delete", "expect": {"stage": "lead"}},
        "inputs": {"row": 1},
        "workflow": "sync",
        "workflow_version": None,
        "batch": "b",
        "actor": None,
        "trigger": None,
        "sources": ["sheet/1"],
        "effective_at": None,
        "fingerprint": "first",
    }
    update = {
        **action,
        "operation": "update",
        "before": {"stage": "lead"},
        "after": {"stage": "customer"},
        "fingerprint": "second",
        "timestamp": datetime(2026, 1, 2, tzinfo=UTC),
        "compensates": [],
        "replays": [],
        "moved_to": None,
        "requested": None,
    }
    built, triggered = Entity.first(address, **action), Entity.first(address, **action)
    created = built.pending_events[0]
    library = eventsourcing.domain.CanInitAggregate.mutate(created, None)
    assert vars(created.mutate(None)) == vars(library)  # init_built: the library's aggregate
    assert type(library) is Entity and library.fields == {"stage": "lead"}
    built.record(**update)
    triggered.trigger_event(Entity.ActionRecorded, address=str(address), **update)
    new, old = built.pending_events[-1], triggered.pending_events[-1]
    assert new == old
    assert mapper.to_stored_event(new) == mapper.to_stored_event(old)
    assert mapper.to_domain_event(mapper.to_stored_event(new)) == new
    assert (built.version, built.fields, built.last_fingerprint) == (
        2,
        {"stage": "customer"},
        "second",
    )
    del update["batch"]
    with pytest.raises(TypeError, match=r"\['batch'\]"):
        built.record(**update)
    assert built.version == 2 and len(built.pending_events) == 2
