"""Read-only SQL over the action index that notices and metrics need, in one aggregate query each.

Kept beside the store package (which owns the index and its writes) and built on its recorder's
own statement runner, so the same SQL serves SQLite and PostgreSQL: actions counted by workflow
and operation (`GROUP BY`, no event decoded), and the workflows a rollback batch's compensations
reverse (the ``compensates`` links read from that batch's events, then looked up by fingerprint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from eventsourcing.persistence import StoredEvent

from ledger.application import Ledger
from ledger.domain import Entity
from ledger.store import INDEX_TABLE

_CHUNK = 500


@dataclass(frozen=True)
class ActionCount:
    """How many actions of one operation a workflow took (``None``: recorded without one)."""

    workflow: str | None
    operation: str
    count: int


def action_counts(ledger: Ledger) -> list[ActionCount]:
    """Every recorded action counted by workflow and operation, from the index alone."""
    index: Any = ledger.index
    rows = index._rows(
        f"SELECT workflow, operation, COUNT(*) FROM {index._qualified(INDEX_TABLE)} "
        "GROUP BY workflow, operation ORDER BY workflow, operation",
        [],
    )
    return [ActionCount(workflow, operation, int(count)) for workflow, operation, count in rows]


def compensated_workflows(ledger: Ledger, batch: str) -> tuple[str, ...]:
    """The workflows of the actions that batch ``batch``'s actions compensate (a rollback's
    batch: the lanes its repair concerns), read from history, never from a plan file."""
    index: Any = ledger.index
    p = index.placeholder
    events = index._qualified(cast(Any, ledger.recorder).events_table_name)
    rows = index._rows(
        f"SELECT a.entity_id, a.version, e.topic, e.state FROM {index._qualified(INDEX_TABLE)} a "
        f"JOIN {events} e ON e.originator_id = a.entity_id AND e.originator_version = a.version "
        f"WHERE a.batch = {p}",
        [batch],
    )
    fingerprints: set[str] = set()
    for db_id, version, topic, state in rows:
        event = ledger.mapper.to_domain_event(
            StoredEvent(index._uuid(db_id), version, topic, bytes(state))
        )
        fingerprints.update(cast(Entity.Action, event).compensates)
    found: set[str] = set()
    ordered = sorted(fingerprints)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        found.update(
            workflow
            for (workflow,) in index._rows(
                f"SELECT DISTINCT workflow FROM {index._qualified(INDEX_TABLE)} "
                f"WHERE fingerprint IN ({', '.join([p] * len(chunk))})",
                chunk,
            )
            if workflow is not None
        )
    return tuple(sorted(found))
