"""Comparing: the drift between the ledger's projection of a collection and the target system.

`compare_with_target` merges two streams in key order (`ledger.keys.merge_by_key`), so memory
does not grow with the collection: the ledger's projection of a collection (now or at a point),
folded from its actions page by page, and the adapter's ``scan``. Each record is in one of three
states of drift:

- ``missing_in_target``: the ledger says it exists; the target does not have it;
- ``unknown_to_ledger``: the target has it; the ledger never saw it, or saw it deleted;
- ``fields``: both have it, and fields differ (by `same`: ``1``, ``1.0`` and ``"1"`` differ).

Which fields are compared. The ledger knows the fields its actions touched: all fields a
create set, and every field an update set or unset (an unset one is known to be absent). A
field no action ever touched (a column the automation never wrote, filled by the target) is
outside its knowledge and is not compared, unless ``all_fields``. A field the ledger knows to
be absent and the target holds as null is drift (``(ABSENT, None)``); ``null_is_absent``
treats the two as the same, for SQL targets, where a column cannot be absent.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from eventsourcing.persistence import StoredEvent

from ledger.application import Ledger
from ledger.domain import TRACK, Entity, fold
from ledger.encoding import encode_value
from ledger.errors import InvalidChange
from ledger.keys import in_key_order, merge_by_key
from ledger.points import Point
from ledger.ports import Adapter, Record
from ledger.store import Cutoff
from ledger.values import ABSENT, same

DriftKind = Literal["missing_in_target", "unknown_to_ledger", "fields", "before_differs"]
KINDS: tuple[DriftKind, ...] = get_args(DriftKind)
PAGE_SIZE = 5000


@dataclass(frozen=True)
class Drift:
    """One record that differs: ``fields`` maps a field to ``(ledger, target)``, ABSENT where
    a side lacks it. ``ledger_version`` is 0 for a record the ledger never saw."""

    key: str
    kind: DriftKind
    fields: dict[str, tuple[Any, Any]]
    ledger_version: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "ledger_version": self.ledger_version,
            # A side that lacks the field is left out: {"note": {"target": null}} is
            # "absent in the ledger, null in the target".
            "fields": {
                name: {
                    side: encode_value(value)
                    for side, value in (("ledger", ours), ("target", theirs))
                    if value is not ABSENT
                }
                for name, (ours, theirs) in self.fields.items()
            },
        }


@dataclass(frozen=True)
class ReconcileScope:
    """What a comparison looks at; a plan keeps it, so its verification looks the same way."""

    at: Point | None = None
    tracked_only: bool = False
    all_fields: bool = False
    null_is_absent: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "at": str(self.at) if self.at else None,
            "tracked_only": self.tracked_only,
            "all_fields": self.all_fields,
            "null_is_absent": self.null_is_absent,
        }


@dataclass
class Known:
    """One side's account of a record: its fields, which fields it vouches for (``known``, or
    every field when ``complete``), and drift found while folding it (``notes``)."""

    key: str
    exists: bool = False
    fields: dict[str, Any] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)
    version: int = 0
    complete: bool = False
    notes: list[Drift] = field(default_factory=list)


Pair = tuple[str, Known | None, Record | None]


class Comparison(Iterator[Drift]):
    """The drift of one collection, streamed; counts the records each side held as it goes.
    ``scope`` and ``position`` (the end of the log when it was made) say how the ledger was
    read, so a plan made from it is verified the same way; ``against`` is what the target was
    held against: the ledger, or a baseline and the actions since."""

    def __init__(
        self,
        system: str,
        collection: str,
        label: str | None,
        pairs: Iterator[Pair],
        scope: ReconcileScope,
        position: int,
        against: Literal["ledger", "baseline"] = "ledger",
    ):
        self.system = system
        self.collection = collection
        self.label = label
        self.scope = scope
        self.position = position
        self.against = against
        self.sides: Counter[str] = Counter()
        self._drifts = _drifts(pairs, self.sides, scope)

    def __next__(self) -> Drift:
        return next(self._drifts)


def compare_with_target(
    ledger: Ledger,
    adapter: Adapter,
    collection: str,
    at: Point | None = None,
    *,
    tracked_only: bool = False,
    all_fields: bool = False,
    null_is_absent: bool = False,
) -> Comparison:
    """Every drifted record of a collection between the ledger (now, or ``at``) and the target,
    in key order; ``tracked_only`` leaves out target records the ledger never saw."""
    scope = ReconcileScope(at, tracked_only, all_fields, null_is_absent)
    return compare_in_scope(ledger, adapter, collection, scope)


def compare_in_scope(
    ledger: Ledger, adapter: Adapter, collection: str, scope: ReconcileScope
) -> Comparison:
    """The comparison of a scope (a plan's, to verify it), the ledger read at the log's end."""
    if scope.at is not None and scope.at.kind == "version":
        raise InvalidChange("a collection has no version; use a time or a checkpoint", field="--at")
    position = ledger.recorder.max_notification_id() or 0
    cutoff = ledger.cutoff(scope.at) or Cutoff("position", position)
    label = str(scope.at) if scope.at else None
    projection = _projection(ledger, adapter.system, collection, cutoff)
    target = target_records(adapter, collection)
    return Comparison(adapter.system, collection, label, merge(projection, target), scope, position)


def target_records(adapter: Adapter, collection: str) -> Iterator[tuple[str, Record]]:
    """The target's scan, checked to be in the one key order while it passes."""
    return in_key_order(adapter.scan(collection), f"{adapter.system}/{collection}")


def _drifts(pairs: Iterator[Pair], sides: Counter[str], scope: ReconcileScope) -> Iterator[Drift]:
    for key, ours, theirs in pairs:
        if ours is not None:
            yield from ours.notes
        exists = ours is not None and ours.exists
        sides["ledger"] += exists
        sides["target"] += theirs is not None
        if exists and theirs is None:
            known = cast(Known, ours)
            yield Drift(
                key,
                "missing_in_target",
                {f: (v, ABSENT) for f, v in known.fields.items()},
                known.version,
            )
        elif theirs is not None and not exists:
            if ours is None and scope.tracked_only:
                continue
            yield Drift(
                key,
                "unknown_to_ledger",
                {f: (ABSENT, v) for f, v in theirs.items()},
                ours.version if ours is not None else 0,
            )
        elif exists and theirs is not None:
            known = cast(Known, ours)
            whole = scope.all_fields or known.complete
            names = set(known.fields) | set(theirs) if whole else known.known
            differing = _differing(known.fields, theirs, names, scope.null_is_absent)
            if differing:
                yield Drift(key, "fields", differing, known.version)


def _differing(
    ours: Mapping[str, Any], theirs: Mapping[str, Any], names: Iterable[str], null_is_absent: bool
) -> dict[str, tuple[Any, Any]]:
    differing = {}
    for name in names:
        a, b = ours.get(name, ABSENT), theirs.get(name, ABSENT)
        if same(a, b) or (null_is_absent and _nothing(a) and _nothing(b)):
            continue
        differing[name] = (a, b)
    return {name: differing[name] for name in sorted(differing)} if differing else differing


def _nothing(value: Any) -> bool:
    return value is None or value is ABSENT


def actions(
    ledger: Ledger, system: str, collection: str, cutoff: Cutoff
) -> Iterator[tuple[str, int, Entity.Action]]:
    """Every action of a collection within the cutoff, in (key, version) order, page by page."""
    after: tuple[str, int] | None = None
    while True:
        page = ledger.index.collection_page(system, collection, cutoff, after, PAGE_SIZE)
        for row in page:
            stored = StoredEvent(row.entity_id, row.version, row.topic, row.state)
            yield row.key, row.position, cast(Entity.Action, ledger.mapper.to_domain_event(stored))
        if len(page) < PAGE_SIZE:
            return
        after = (page[-1].key, page[-1].version)


def _projection(ledger: Ledger, system: str, collection: str, cutoff: Cutoff) -> Iterator[Known]:
    """The ledger's knowledge of each record that has actions within the cutoff, in key order."""
    for key, rows in itertools.groupby(
        ledger.collection_actions(system, collection, cutoff), key=lambda row: row[0]
    ):
        state = Known(key)
        for _, version, _, _, operation, before, after in rows:
            state.fields, state.exists = fold(state.fields, operation, before, after)
            if operation in ("create", TRACK):
                state.known = set(after)
            elif operation == "delete":
                state.known = set()
            else:
                state.known |= before.keys() | after.keys()
            state.version = version
        yield state


def merge(ours: Iterator[Known], theirs: Iterator[tuple[str, Record]]) -> Iterator[Pair]:
    """Pairs of (key, the ledger's record, the target's record) from two key-ordered streams."""
    for key, known, record in merge_by_key(ours, theirs, _known_key, _record_key):
        yield key, known, None if record is None else record[1]


def _known_key(known: Known) -> str:
    return known.key


def _record_key(record: tuple[str, Record]) -> str:
    return record[0]
