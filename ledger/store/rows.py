"""What the ledger's tables hold and what its queries answer, as types: one row shape per name.

Rows that many callers unpack (an action matched by a scope, an intent waiting to be settled,
an action of a collection) are NamedTuples, so ``for entity_id, version, *_ in rows`` keeps
working while each field has a name and a type.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, NamedTuple
from uuid import UUID

INDEX_TABLE: Final = "ledger_actions"
PENDING_TABLE: Final = "ledger_pending"
LEAF_TABLE: Final = "ledger_leaves"  # one recorded leaf per stored event (ledger.store.tree)
TREE_TABLE: Final = "ledger_tree"  # the tree's one state row: frontier and latest signed head
HEAD_TABLE: Final = "ledger_tree_heads"  # signed heads kept as history (one per interval)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

CutoffKind = Literal["position", "recorded", "effective"]
_CUTOFF_COLUMNS: Final[dict[CutoffKind, str]] = {
    "position": "a.position",
    "recorded": "a.recorded_at",
    "effective": "COALESCE(a.effective_at, a.recorded_at)",
}


def to_micros(moment: datetime) -> int:
    """Exact microseconds since the epoch (a float timestamp would round)."""
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True)
class IndexEntry:
    """What the index stores about one action, besides its log position."""

    system: str
    collection: str
    key: str
    operation: str
    batch: str
    workflow: str | None
    recorded_at: int
    effective_at: int | None
    fingerprint: str


@dataclass(frozen=True)
class Cutoff:
    """Which actions count: those at or before a log position, a recorded or effective time."""

    kind: CutoffKind
    value: int

    def condition(self, placeholder: str) -> str:
        return f"{_CUTOFF_COLUMNS[self.kind]} <= {placeholder}"


@dataclass(frozen=True)
class IndexedAction:
    """Where an already recorded action lives."""

    entity_id: UUID
    version: int
    position: int


@dataclass(frozen=True)
class CollectionRow:
    """One action of a collection, with its stored event, as streamed in key order."""

    key: str
    entity_id: UUID
    version: int
    position: int
    recorded_at: int  # microseconds since the epoch
    topic: str
    state: bytes


# `IndexedRecorder.collection_states`: (key, version, position, recorded_at, state), plain
# tuples as the database returns them, because folding a large collection reads millions.
StateRow = tuple[str, int, int, int, bytes]


class MatchedAction(NamedTuple):
    """An action in a scope (`IndexedRecorder.actions_matching`), oldest first."""

    entity_id: UUID
    version: int
    position: int
    fingerprint: str
    system: str
    collection: str
    key: str


class PendingIntent(NamedTuple):
    """An intent declared and not yet settled: a row of the pending table."""

    fingerprint: str
    batch: str
    system: str
    collection: str
    key: str


class CollectionAction(NamedTuple):
    """What folding a collection needs of one action (`Ledger.collection_actions`)."""

    key: str
    version: int
    position: int
    recorded_at: int  # microseconds since the epoch
    operation: str
    before: dict[str, Any]
    after: dict[str, Any]
