"""Delivering notices at least once, resumably, and never twice at the same time.

Each notifier has a `Delivery` aggregate (its id derived from the notifier's name): the log
position up to which it has told everything, and, while a process delivers, that process's
claim. A delivery first records a claim on the positions it read (`Claimed`, saved at the
aggregate's next version: two processes claiming at once cannot both succeed, the loser finds
the claim and leaves the notifier alone), then sends each notice in log order, recording each
`Delivered` (which renews the claim) before sending the next. A notice that fails (after the
notifier's own retries) is recorded as `Failed` — the notice, the error, the attempts so far —
and the notifier stops there: the position stays before it, so the next delivery retries it
first and nothing after it overtakes it. A process that dies mid-delivery leaves a claim that
expires after the notifier's lease; the next delivery takes over and sends again what was
sent but not recorded (at-least-once: the notice id lets a receiver tell). A process whose
claim expired and was taken finds its next save refused on the version and stops.

Nothing here runs inside a write path: deliveries read the log after the facts are committed,
so a failing notifier cannot block or undo what it reports.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from ledger.application import Ledger
from ledger.domain import NAMESPACE
from ledger.lanes import LaneConfig
from ledger.logs import get_logger
from ledger.notify.config import check_routes
from ledger.notify.notices import Notice, read_notices
from ledger.notify.notifier import Notifier, NotifierFailed

PASS_EVERY = 10_000  # record the position reached with nothing to tell after this many events
SNAPSHOT_EVERY = 100
MAX_ATTEMPTS = 10
_log = get_logger("ledger.notify")


def delivery_id(notifier: str) -> UUID:
    """The aggregate id of a notifier's delivery state: any process derives it."""
    return uuid5(NAMESPACE, f"notifier:{notifier}")


class Delivery(Aggregate):
    """What one notifier has been told, and who is telling it now."""

    def __init__(self, notifier: str) -> None:
        self.notifier = notifier
        self.position = 0  # every notice at or before it is delivered (or was not for it)
        self.holder: str | None = None  # the process delivering, until `until`
        self.until: datetime | None = None
        self.failing: int | None = None  # the position of the notice that failed last
        self.attempts = 0  # tries so far at that notice
        self.last_error: str | None = None
        self.delivered = 0
        self.failures = 0

    class Started(Aggregate.Created):
        notifier: str

    class Claimed(Aggregate.Event):
        holder: str
        upto: int
        until: datetime

        def apply(self, state: Delivery) -> None:
            state.holder, state.until = self.holder, self.until

    class Delivered(Aggregate.Event):
        notice: str
        kind: str
        position: int
        attempts: int
        until: datetime

        def apply(self, state: Delivery) -> None:
            state.position, state.until = self.position, self.until
            state.delivered += 1
            if state.failing == self.position:
                state.failing, state.attempts = None, 0

    class Failed(Aggregate.Event):
        notice: str
        kind: str
        position: int
        error: str
        attempts: int  # every try at this notice so far, across deliveries

        def apply(self, state: Delivery) -> None:
            state.holder = state.until = None
            state.failing, state.attempts = self.position, self.attempts
            state.last_error = self.error
            state.failures += 1

    class Passed(Aggregate.Event):
        position: int

        def apply(self, state: Delivery) -> None:
            state.position = max(state.position, self.position)
            state.holder = state.until = None

    @classmethod
    def start(cls, notifier: str) -> Delivery:
        return cls._create(cls.Started, id=delivery_id(notifier), notifier=notifier)

    def claimed_by_another(self, holder: str, now: datetime) -> bool:
        return (
            self.holder is not None
            and self.holder != holder
            and self.until is not None
            and self.until > now
        )


@dataclass(frozen=True)
class Sent:
    """A notice a notifier took."""

    notifier: str
    notice: Notice
    attempts: int

    def to_json(self) -> dict[str, Any]:
        return {"notifier": self.notifier, "attempts": self.attempts, **self.notice.to_json()}


@dataclass(frozen=True)
class DeliveryFailure:
    """A notice a notifier did not take: recorded, and retried first next time."""

    notifier: str
    notice: Notice
    error: str
    attempts: int

    def to_json(self) -> dict[str, Any]:
        return {
            "notifier": self.notifier,
            "notice": self.notice.id,
            "kind": self.notice.kind,
            "position": self.notice.position,
            "error": self.error,
            "attempts": self.attempts,
        }

    @property
    def message(self) -> str:
        return (
            f"notifier {self.notifier!r} failed to deliver {self.notice.kind} (position "
            f"{self.notice.position}) after {self.attempts} attempt(s): {self.error}; recorded, "
            "it is retried at the next delivery (`ledger notify`)"
        )


@dataclass
class DeliveryReport:
    """What one delivery did: notices sent, failures recorded, notifiers another process was
    delivering for (left to it), and the log position read up to."""

    position: int = 0
    delivered: list[Sent] = field(default_factory=list)
    failures: list[DeliveryFailure] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "delivered": [sent.to_json() for sent in self.delivered],
            "failures": [failure.to_json() for failure in self.failures],
            "busy": self.busy,
        }


def deliver_notices(
    ledger: Ledger,
    notifiers: Mapping[str, Notifier],
    lanes: Mapping[str, LaneConfig],
    *,
    holder: str | None = None,
) -> DeliveryReport:
    """Deliver every notice not yet delivered to the notifiers of its workflows' lanes (the
    ``notify`` of each lane row), each notifier from where it stopped. A lane naming a notifier
    not in ``notifiers`` is refused (`ConfigurationError`) before anything is sent."""
    check_routes(lanes, notifiers)
    holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    report = DeliveryReport(position=ledger.recorder.max_notification_id() or 0)
    routes = {
        name: {workflow for workflow, lane in lanes.items() if name in lane.notify}
        for name in notifiers
    }
    states = {name: _load(ledger, name) for name in notifiers if routes[name]}
    if not states:
        return report
    start = min(0 if state is None else state.position for state in states.values())
    notices = read_notices(ledger, start, report.position, lanes)
    for name in sorted(states):
        wanted = [notice for notice in notices if routes[name] & set(notice.workflows)]
        _deliver(ledger, notifiers[name], wanted, holder, report)
    return report


def _deliver(
    ledger: Ledger, notifier: Notifier, notices: list[Notice], holder: str, report: DeliveryReport
) -> None:
    name = notifier.name
    for _ in range(MAX_ATTEMPTS):
        state = _load(ledger, name) or Delivery.start(name)
        now = datetime.now(UTC)
        if state.claimed_by_another(holder, now):
            report.busy.append(name)
            return
        todo = [notice for notice in notices if notice.position > state.position]
        if not todo:
            if report.position - state.position >= PASS_EVERY:
                state.trigger_event(Delivery.Passed, position=report.position)
                _save(ledger, state)
            return
        state.trigger_event(
            Delivery.Claimed, holder=holder, upto=report.position, until=now + notifier.lease
        )
        if _save(ledger, state):
            break
    else:
        report.busy.append(name)
        return
    for notice in todo:
        with_logged = _log.bind(notifier=name, notice=notice.id, kind=notice.kind)
        try:
            attempts = notifier.send(notice)
        except NotifierFailed as error:
            tries = (state.attempts if state.failing == notice.position else 0) + error.attempts
            state.trigger_event(
                Delivery.Failed,
                notice=notice.id,
                kind=notice.kind,
                position=notice.position,
                error=str(error),
                attempts=tries,
            )
            failure = DeliveryFailure(name, notice, str(error), tries)
            with_logged.info("notice.failed", error=str(error), attempts=tries)
            if _save(ledger, state):
                report.failures.append(failure)
            return
        state.trigger_event(
            Delivery.Delivered,
            notice=notice.id,
            kind=notice.kind,
            position=notice.position,
            attempts=attempts,
            until=datetime.now(UTC) + notifier.lease,
        )
        if not _save(ledger, state):  # the claim expired and another process took over
            with_logged.warning("notice.claim_lost", holder=holder)
            return
        with_logged.info("notice.delivered", attempts=attempts, position=notice.position)
        report.delivered.append(Sent(name, notice, attempts))
    state.trigger_event(Delivery.Passed, position=report.position)
    _save(ledger, state)


def delivery_state(ledger: Ledger, notifier: str) -> Delivery | None:
    """A notifier's delivery state as stored now (``None``: it was never delivered to)."""
    return _load(ledger, notifier)


def _load(ledger: Ledger, notifier: str) -> Delivery | None:
    try:
        return cast(Delivery, ledger.repository.get(delivery_id(notifier)))
    except AggregateNotFoundError:
        return None


def _save(ledger: Ledger, state: Delivery) -> bool:
    """Save at the next version; False when another process saved this notifier first."""
    try:
        ledger.save(state)
    except IntegrityError:
        return False
    if state.version % SNAPSHOT_EVERY == 0:
        ledger.take_snapshot(state.id, version=state.version)
    return True
