"""Notices: the facts worth telling someone, read from the ledger's notification log.

No write path calls a notifier. Pauses, trips, enables, canaries and approvals are events of a
`Lane`; a rollback applied is its ``rollback-<plan>`` batch closing; a saved plan and a
reconciliation that found drift are events of the aggregates that record them. `read_notices`
turns the events in a range of log positions into `Notice` values, each with the workflows whose
lanes it concerns: what a delivery routes by. Events of modules this one does not import (the
reconciliation log, saved plans) are matched by their topic, so a ledger without them simply
has no such notices.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast
from uuid import UUID, uuid5

import orjson

from ledger.application import Ledger
from ledger.domain import NAMESPACE, Batch
from ledger.encoding import encode_value
from ledger.lanes import Lane, LaneConfig
from ledger.tallies import compensated_workflows

Kind = Literal[
    "lane.paused",
    "lane.tripped",
    "lane.enabled",
    "lane.canary_allowed",
    "rollback.planned",
    "rollback.approved",
    "rollback.applied",
    "drift.found",
]
PAGE_SIZE = 500
ROLLBACK_BATCH = "rollback-"


def topic(event_class: type) -> str:
    return f"{event_class.__module__}:{event_class.__qualname__}"


LANE_PAUSED = topic(Lane.Paused)
LANE_ENABLED = topic(Lane.Enabled)
CANARY_ALLOWED = topic(Lane.CanaryAllowed)
ROLLBACK_APPROVED = topic(Lane.RollbackApproved)
BATCH_CLOSED = topic(Batch.Closed)
# Recorded by modules this one reads by topic only (docs/operations.md names them).
RECONCILIATION_CHECKED = "ledger.lane_evidence:ReconciliationLog.Checked"
PLAN_SAVED = "ledger.rollback.records:PlanRecord.Saved"
TOPICS = (
    LANE_PAUSED,
    LANE_ENABLED,
    CANARY_ALLOWED,
    ROLLBACK_APPROVED,
    BATCH_CLOSED,
    RECONCILIATION_CHECKED,
    PLAN_SAVED,
)


@dataclass(frozen=True)
class Notice:
    """One thing to tell: what happened, where in the log, when, to which workflows' lanes.

    ``id`` is stable (derived from the event), so a receiver told twice (delivery is
    at-least-once) can tell it is the same notice."""

    id: str
    kind: Kind
    position: int
    at: datetime
    workflows: tuple[str, ...]
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "position": self.position,
            "at": self.at.isoformat(),
            "workflows": list(self.workflows),
            "summary": self.summary,
            "details": self.details,
        }

    def body(self) -> bytes:
        """The notice as the exact bytes sent (and signed): JSON with sorted keys."""
        return orjson.dumps(self.to_json(), option=orjson.OPT_SORT_KEYS)


def read_notices(
    ledger: Ledger, after: int, upto: int, lanes: Mapping[str, LaneConfig]
) -> list[Notice]:
    """The notices of log positions ``after`` < p <= ``upto``, in log order; ``lanes`` (the
    configured rows) route a drift to the lanes of the collection's system."""
    reader = _Reader(ledger, lanes)
    found: list[Notice] = []
    for notification in _notifications(ledger, after, upto):
        notice = reader.notice(notification)
        if notice is not None:
            found.append(notice)
    return found


def _notifications(ledger: Ledger, after: int, upto: int) -> Iterator[Any]:
    start = after + 1
    while start <= upto:
        page = ledger.recorder.select_notifications(start, PAGE_SIZE, stop=upto, topics=TOPICS)
        yield from page
        if len(page) < PAGE_SIZE:
            return
        start = page[-1].id + 1


class _Reader:
    """Decodes the events of interest; the lookups a notice needs (a batch's name, a
    collection's name) are read once each."""

    def __init__(self, ledger: Ledger, lanes: Mapping[str, LaneConfig]):
        self.ledger = ledger
        self.lanes = lanes
        self.first_events: dict[UUID, Any] = {}

    def notice(self, notification: Any) -> Notice | None:
        if notification.topic == BATCH_CLOSED:
            return self._rollback_applied(notification)
        event: Any = self.ledger.mapper.to_domain_event(notification)
        if notification.topic == RECONCILIATION_CHECKED:
            return self._drift(notification, event)
        if notification.topic == PLAN_SAVED:
            return self._planned(notification, event)
        workflow = cast(Any, self._first(notification.originator_id)).workflow
        if notification.topic == LANE_PAUSED:
            return self._paused(notification, event, workflow)
        if notification.topic == LANE_ENABLED:
            how = "overridden" if event.override else "with proof: " + ", ".join(event.proved)
            return _notice(
                notification,
                "lane.enabled",
                (workflow,),
                event.timestamp,
                f"workflow {workflow!r} enabled by {event.actor} ({how}): {event.reason}",
                actor=event.actor,
                reason=event.reason,
                override=event.override,
                proved=list(event.proved),
            )
        if notification.topic == CANARY_ALLOWED:
            return _notice(
                notification,
                "lane.canary_allowed",
                (workflow,),
                event.timestamp,
                f"workflow {workflow!r} admits canary batch {event.batch!r} of at most "
                f"{event.limit} actions (by {event.actor})",
                actor=event.actor,
                batch=event.batch,
                limit=event.limit,
            )
        return _notice(
            notification,
            "rollback.approved",
            (workflow,),
            event.timestamp,
            f"rollback plan {event.plan} of workflow {workflow!r} approved by {event.approver} "
            f"(planned by {event.planner})",
            plan=event.plan,
            seal=event.seal,
            planner=event.planner,
            approver=event.approver,
        )

    def _paused(self, notification: Any, event: Any, workflow: str) -> Notice:
        if event.trigger is None:
            return _notice(
                notification,
                "lane.paused",
                (workflow,),
                event.timestamp,
                f"workflow {workflow!r} paused by {event.actor}: {event.reason}",
                actor=event.actor,
                reason=event.reason,
            )
        return _notice(
            notification,
            "lane.tripped",
            (workflow,),
            event.timestamp,
            f"workflow {workflow!r} paused by stop trigger {event.trigger}"
            + (f" in batch {event.batch}" if event.batch else "")
            + f": {event.reason}",
            actor=event.actor,
            reason=event.reason,
            trigger=event.trigger,
            evidence=encode_value(event.evidence),
            batch=event.batch,
        )

    def _rollback_applied(self, notification: Any) -> Notice | None:
        name = cast(Any, self._first(notification.originator_id)).name
        if not name.startswith(ROLLBACK_BATCH):
            return None
        event: Any = self.ledger.mapper.to_domain_event(notification)
        workflows = compensated_workflows(self.ledger, name)
        plan = name[len(ROLLBACK_BATCH) :]
        return _notice(
            notification,
            "rollback.applied",
            workflows,
            event.timestamp,
            f"rollback plan {plan} applied: {event.action_count} compensation(s) recorded in "
            f"batch {name}" + (f" (workflows {', '.join(workflows)})" if workflows else ""),
            plan=plan,
            batch=name,
            compensations=event.action_count,
        )

    def _planned(self, notification: Any, event: Any) -> Notice:
        plan = cast(Any, self._first(notification.originator_id)).plan
        workflows = tuple(sorted(event.workflows))
        return _notice(
            notification,
            "rollback.planned",
            workflows,
            event.timestamp,
            f"rollback plan {plan} saved by {event.planner or 'someone unnamed'} "
            f"({event.compensations} compensation(s), {event.conflicts} conflict(s)): "
            f"{event.reason}; it waits at {event.path}",
            plan=plan,
            seal=event.seal,
            planner=event.planner,
            direction=event.direction,
            path=event.path,
            reason=event.reason,
            compensations=event.compensations,
            conflicts=event.conflicts,
        )

    def _drift(self, notification: Any, event: Any) -> Notice | None:
        if event.drifted == 0:
            return None
        collection = cast(Any, self._first(notification.originator_id)).collection
        system = collection.partition("/")[0]
        workflows = tuple(
            sorted(
                name
                for name, lane in self.lanes.items()
                if system in lane.systems or collection in lane.reenable.reconciled
            )
        )
        return _notice(
            notification,
            "drift.found",
            workflows,
            event.timestamp,
            f"reconciliation of {collection} by {event.actor} found {event.drifted} of "
            f"{event.checked} record(s) drifted",
            collection=collection,
            drifted=event.drifted,
            checked=event.checked,
            actor=event.actor,
            counts=dict(event.counts),
        )

    def _first(self, originator_id: UUID) -> Any:
        """An aggregate's first event (its name, workflow or collection), read once."""
        if originator_id not in self.first_events:
            (self.first_events[originator_id],) = self.ledger.events.get(originator_id, lte=1)
        return self.first_events[originator_id]


def _notice(
    notification: Any,
    kind: Kind,
    workflows: tuple[str, ...],
    at: datetime,
    summary: str,
    **details: Any,
) -> Notice:
    key = f"{notification.originator_id}:{notification.originator_version}"
    return Notice(
        id=str(uuid5(NAMESPACE, f"notice:{key}")),
        kind=kind,
        position=notification.id,
        at=at,
        workflows=workflows,
        summary=summary,
        details=details,
    )
