"""The PostgreSQL store sends a save's events, leaves and index rows by binary COPY
(`ledger.store.pg_copy`): what it stores must be exactly what an INSERT would have stored,
read back by the library's own recorder, under the same ids in the same order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from ledger import Address, Change, open_ledger
from ledger.evidence import verify
from ledger.store.rows import INDEX_TABLE, LEAF_TABLE, TREE_TABLE

pytestmark = pytest.mark.postgres

AWKWARD = ("tab\there", "new\nline", "back\\slash \\N", "quote ' \" ;", "ünïcødé ✓ 🚀", "")


def test_awkward_text_nulls_and_large_values_are_stored_exactly(postgres_url: str) -> None:
    ledger = open_ledger(postgres_url)
    try:
        big = "x" * 900_000  # most of a COPY block (1 MiB)
        changes = [
            Change(
                Address("crm", f"col {text}", f"key {i} {text}"),
                "create",
                values={"text": text, "n": i, "big": big if i == 2 else None},
                workflow=None if i % 2 else f"wf {text}",
                effective_at=datetime(2026, 1, 2, 3, 4, 5, i, tzinfo=UTC) if i % 3 else None,
                actor=text,
            )
            for i, text in enumerate(AWKWARD)
        ]
        receipts = ledger.record_all(changes, batch="batch \t\\ ✓")
        positions = [receipt.action.position for receipt in receipts]
        assert positions == list(range(positions[0], positions[0] + len(changes)))

        for change, receipt in zip(changes, receipts, strict=True):
            (action,) = ledger.history(change.address)
            assert action == receipt.action
            assert action.after == change.values
            assert (action.workflow, action.batch, action.actor) == (
                change.workflow,
                "batch \t\\ ✓",
                change.actor,
            )
            assert action.effective_at == change.effective_at

        # The library's own recorder reads the events back under those ids, in that order.
        notifications = ledger.recorder.select_notifications(positions[0], len(changes))
        assert [n.id for n in notifications] == positions
        assert [n.originator_id for n in notifications] == [r.action.entity_id for r in receipts]
        assert verify(ledger).ok
    finally:
        ledger.close()


def test_a_save_far_above_the_old_statement_size_is_stored_in_one_transaction(
    postgres_url: str,
) -> None:
    """About 8 MB of events in one save (the library's one-statement insert hung from ~5 MB)."""
    ledger = open_ledger(postgres_url)
    try:
        pad = "p" * 2_000
        changes = [
            Change(Address("crm", "contacts", f"{i:05d}"), "create", values={"pad": pad, "i": i})
            for i in range(4_000)
        ]
        receipts = ledger.record_all(changes, batch="big")
        assert len({r.action.position for r in receipts}) == 4_000
        assert ledger.state(Address("crm", "contacts", "03999")).fields == {"pad": pad, "i": 3999}
        report = verify(ledger)
        assert report.ok and report.size > 4_000  # and the batch's own event
    finally:
        ledger.close()


def test_a_refused_save_leaves_no_event_leaf_or_index_row(postgres_url: str) -> None:
    ledger = open_ledger(postgres_url)
    try:
        first = Change(Address("crm", "contacts", "1"), "create", values={"n": 1})
        ledger.record_all([first], batch="one")
        recorder: Any = ledger.recorder
        counts = _counts(postgres_url, recorder)
        stored = recorder.select_events(ledger.history(first.address)[0].entity_id)
        with pytest.raises(IntegrityError):  # the same event again: refused, nothing stored
            recorder.insert_events([StoredEvent(uuid4(), 1, "t", b"{}"), *stored])
        assert _counts(postgres_url, recorder) == counts
        again = Change(Address("crm", "contacts", "2"), "create", values={"n": 2})
        ledger.record_all([again], batch="two")
        assert verify(ledger).ok
    finally:
        ledger.close()


def _counts(url: str, recorder: Any) -> tuple[int, ...]:
    tables = (recorder.events_table_name, INDEX_TABLE, LEAF_TABLE, TREE_TABLE)
    with psycopg.connect(url) as connection:
        return tuple(
            connection.execute(f"SELECT count(*) FROM {recorder._qualified(table)}").fetchone()[0]  # type: ignore[index]
            for table in tables
        ) + tuple(
            connection.execute(f"SELECT size FROM {recorder._qualified(TREE_TABLE)}").fetchone()
        )  # type: ignore[arg-type]
