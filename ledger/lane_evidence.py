"""Reconciliations as lane evidence: each check's result recorded, and the drift stop trigger.

A lane's re-enable rule may ask that the last reconciliation of a collection is clean
(``reconciled = ["crm/contacts"]``), and its ``drift_share`` trigger pauses it when a
reconciliation finds too much of a collection drifted. Both need the result of every check as
a fact in the ledger: a `ReconciliationLog` per collection (``system/collection``), one
`Checked` event per check (drifted, records compared, who, when), snapshotted every
`SNAPSHOT_EVERY` checks so that reading the last one stays one short read however often a
cron reconciles. `trip_lanes` is how a judgement outside a run (drift here, a rollback plan's
conflicts in `ledger.rollback.lane_rules`) pauses the lanes it concerns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from uuid import UUID, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from ledger.application import Ledger
from ledger.domain import NAMESPACE
from ledger.errors import ConcurrencyConflict, InvalidChange
from ledger.lane_control import trip_lane
from ledger.lanes import LaneConfig
from ledger.reenable import Reconciliation
from ledger.triggers import Triggers, Trip, check_drift

SNAPSHOT_EVERY = 100
MAX_ATTEMPTS = 10


def reconciliation_log_id(collection: str) -> UUID:
    """The aggregate id of a collection's reconciliation log, derived from its name."""
    return uuid5(NAMESPACE, f"reconciliation:{collection}")


@dataclass(frozen=True)
class LaneTrip:
    """A lane a judgement tripped: the trigger and its evidence, and whether this paused it
    (False: it was paused already)."""

    workflow: str
    trip: Trip
    paused_now: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "trigger": self.trip.trigger,
            "rule": self.trip.rule,
            "paused_now": self.paused_now,
        }


@dataclass(frozen=True)
class ReconciliationRecord:
    """A recorded check: its result, who ran it, and the lanes its drift tripped."""

    reconciliation: Reconciliation
    actor: str
    trips: tuple[LaneTrip, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        result = self.reconciliation
        return {
            "collection": result.collection,
            "drifted": result.drifted,
            "checked": result.checked,
            "at": result.at.isoformat(),
            "actor": self.actor,
            "trips": [trip.to_json() for trip in self.trips],
        }


class ReconciliationLog(Aggregate):
    """Every reconciliation check of one collection; its state is the last one (plain values,
    so a snapshot of it is plain JSON)."""

    def __init__(self, collection: str) -> None:
        self.collection = collection
        self.checks = 0
        self.drifted = 0
        self.checked = 0
        self.at: datetime | None = None
        self.actor: str | None = None

    class Started(Aggregate.Created):
        collection: str

    class Checked(Aggregate.Event):
        drifted: int
        checked: int
        actor: str
        counts: dict[str, int]  # drifted records per kind of drift

        def apply(self, log: ReconciliationLog) -> None:
            log.checks += 1
            log.drifted, log.checked = self.drifted, self.checked
            log.at, log.actor = self.timestamp, self.actor

    @classmethod
    def start(cls, collection: str) -> ReconciliationLog:
        return cls._create(cls.Started, id=reconciliation_log_id(collection), collection=collection)

    @property
    def last(self) -> Reconciliation | None:
        if self.at is None:
            return None
        return Reconciliation(self.collection, self.drifted, self.checked, self.at)


def record_reconciliation(
    ledger: Ledger,
    collection: str,
    drifted: int,
    checked: int,
    *,
    actor: str,
    counts: Mapping[str, int] | None = None,
    lanes: Mapping[str, LaneConfig] | None = None,
) -> ReconciliationRecord:
    """Record a reconciliation of ``collection`` (``system/collection``) that compared
    ``checked`` records and found ``drifted`` of them drifted; then pause every lane whose
    ``systems`` include the collection's system and whose ``drift_share`` the drift exceeds."""
    system, sep, name = collection.partition("/")
    if not sep or not system or not name or drifted < 0 or checked < drifted:
        raise InvalidChange(
            f"a reconciliation of {collection!r} with {drifted} drifted of {checked} records "
            "is not one (system/collection, 0 <= drifted <= checked)",
            field="collection",
        )
    log = _append(ledger, collection, drifted, checked, actor, dict(counts or {}))
    concerned = [lane for lane in (lanes or {}).values() if system in lane.systems]
    trips = trip_lanes(
        ledger, concerned, lambda triggers: check_drift(triggers, collection, drifted, checked)
    )
    assert log.last is not None
    return ReconciliationRecord(log.last, actor, trips)


def last_reconciliation(ledger: Ledger, collection: str) -> Reconciliation | None:
    """The last recorded reconciliation of ``collection`` (``system/collection``), the
    evidence a ``reconciled = [...]`` re-enable rule asks for; ``None`` if never checked."""
    log = _load(ledger, collection)
    return None if log is None else log.last


def trip_lanes(
    ledger: Ledger, lanes: Iterable[LaneConfig], judge: Callable[[Triggers], Trip | None]
) -> tuple[LaneTrip, ...]:
    """Pause each lane whose triggers ``judge`` trips, with the trip's evidence."""
    trips: list[LaneTrip] = []
    for lane in lanes:
        trip = judge(lane.triggers)
        if trip is not None:
            paused = trip_lane(ledger, lane.workflow, trip)
            trips.append(LaneTrip(lane.workflow, trip, paused.paused_now))
    return tuple(trips)


def _append(
    ledger: Ledger, collection: str, drifted: int, checked: int, actor: str, counts: dict[str, int]
) -> ReconciliationLog:
    """Append one check; another process appending first makes the save fail on the version,
    and the log is read again."""
    for _ in range(MAX_ATTEMPTS):
        log = _load(ledger, collection) or ReconciliationLog.start(collection)
        log.trigger_event(
            ReconciliationLog.Checked, drifted=drifted, checked=checked, actor=actor, counts=counts
        )
        try:
            ledger.save(log)
        except IntegrityError:
            continue
        if log.version % SNAPSHOT_EVERY == 0:
            ledger.take_snapshot(log.id, version=log.version)
        return log
    raise ConcurrencyConflict(
        f"the reconciliation log of {collection} kept changing under us; try again"
    )


def _load(ledger: Ledger, collection: str) -> ReconciliationLog | None:
    try:
        return cast(ReconciliationLog, ledger.repository.get(reconciliation_log_id(collection)))
    except AggregateNotFoundError:
        return None
