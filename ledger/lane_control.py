"""Lane services: pause, trip, enable, canary and approve, and the gate every write asks.

These are the functions the CLI (``ledger pause|enable|lanes``) and the HTTP API call. They
read the lane afresh on every call (no cache), so a pause made by another process is seen at
the next call, and save each change with the aggregate's version: two processes changing a
lane at once cannot both win, the loser re-reads and decides again (a second pause is then
no change). They need only the ledger's public surface (`LaneStore`), so the recording gate
below the application can call `ensure_open` without importing it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from ledger.errors import ApprovalRequired, ConcurrencyConflict, LanePaused
from ledger.lanes import (
    ApprovalRecord,
    Canary,
    Lane,
    LaneConfig,
    LaneView,
    check_workflow,
    lane_id,
)
from ledger.reenable import CanaryRun, ReenableCheck, ReenableEvidence, ReenableRule
from ledger.run_records import RunRecord, run_record_id
from ledger.triggers import RunStatistics, Trip
from ledger.views import BatchView

MAX_ATTEMPTS = 10
PAGE_SIZE = 1000
T = TypeVar("T")


class LaneStore(Protocol):
    """What lanes need of the ledger: its repository, recorder, `save` and `batches`."""

    @property
    def repository(self) -> Any: ...

    @property
    def recorder(self) -> Any: ...

    def save(self, *objs: Any, **kwargs: Any) -> Any: ...

    def batches(self) -> list[BatchView]: ...


@dataclass(frozen=True)
class PauseResult:
    """The lane after a pause, and whether this call paused it (False: it was already)."""

    lane: LaneView
    paused_now: bool

    @property
    def message(self) -> str:
        pause = self.lane.pause
        assert pause is not None
        if self.paused_now:
            return f"workflow {self.lane.workflow!r} paused: {pause.reason}"
        return (
            f"workflow {self.lane.workflow!r} was already paused by {pause.actor} at "
            f"{pause.at.isoformat()} ({pause.reason}); nothing changed"
        )


@dataclass(frozen=True)
class EnableResult:
    """The lane after it was enabled, and the conditions proved (or overridden)."""

    lane: LaneView
    check: ReenableCheck


def pause_lane(ledger: LaneStore, workflow: str, reason: str, actor: str) -> PauseResult:
    """Pause a workflow at once: from the next gate check on, none of its writes goes through.
    Pausing a paused lane is one pause (the first one's who, when and why stay)."""
    lane_, changed = _change(ledger, workflow, lambda lane: lane.pause(actor, reason))
    return PauseResult(LaneView.of(lane_, workflow), changed)


def trip_lane(
    ledger: LaneStore,
    workflow: str,
    trip: Trip,
    *,
    batch: str | None = None,
    actor: str | None = None,
) -> PauseResult:
    """Pause a workflow because a stop trigger tripped (in run ``batch``), recording the
    trigger and its evidence; the pauser is ``actor`` or the trigger itself."""
    lane_, changed = _change(
        ledger,
        workflow,
        lambda lane: lane.pause(
            actor or f"stop trigger {trip.trigger}", trip.describe(), trip, batch
        ),
    )
    return PauseResult(LaneView.of(lane_, workflow), changed)


def enable_lane(
    ledger: LaneStore,
    workflow: str,
    actor: str,
    reason: str,
    *,
    rule: ReenableRule,
    evidence: ReenableEvidence,
    override: bool = False,
) -> EnableResult:
    """Let a paused workflow act again once ``evidence`` proves ``rule`` (else
    `ReenableRefused` names each unmet condition), or on ``override`` with a reason, recorded
    as an override. Enabling an active lane is refused (`LaneNotPaused`)."""
    lane_, check = _change(
        ledger,
        workflow,
        lambda lane: lane.enable(actor, reason, rule, evidence, override=override),
    )
    return EnableResult(LaneView.of(lane_, workflow), check)


def allow_canary(ledger: LaneStore, workflow: str, actor: str, batch: str, limit: int) -> LaneView:
    """Admit one batch of at most ``limit`` actions through the gate of a paused workflow:
    the canary run a re-enable rule may ask for. A trip or a pause ends it."""
    lane_, _ = _change(ledger, workflow, lambda lane: lane.allow_canary(actor, batch, limit))
    return LaneView.of(lane_, workflow)


def approve_rollback(
    ledger: LaneStore, workflow: str, plan: str, seal: str, *, planner: str, approver: str
) -> ApprovalRecord:
    """Approve rollback plan ``plan`` of a workflow's batches, bound to its ``seal`` (the
    sealed content's digest): someone other than its planner must (`ApprovalRefused`)."""
    lane_, _ = _change(ledger, workflow, lambda lane: lane.approve(plan, seal, planner, approver))
    return lane_.approvals[plan]


def ensure_approved(
    ledger: LaneStore, config: LaneConfig | None, plan: str, seal: str
) -> ApprovalRecord | None:
    """Before applying a rollback plan of a lane that asks for two persons: its approval,
    for exactly this sealed content; `ApprovalRequired` if it has none or was altered since."""
    if config is None or config.approval == "none":
        return None
    approval = _approvals(ledger, config.workflow).get(plan)
    if approval is None:
        raise ApprovalRequired(
            f"rollback plan {plan} of workflow {config.workflow!r} needs another person's "
            f"approval before it is applied: `ledger rollback approve {plan}`"
        )
    if approval.seal != seal:
        raise ApprovalRequired(
            f"rollback plan {plan} was altered after {approval.approver} approved it (its "
            f"content no longer matches the approved seal {approval.seal}); plan again and "
            "have the new plan approved"
        )
    return approval


def lane(ledger: LaneStore, workflow: str, config: LaneConfig | None = None) -> LaneView:
    """A workflow's lane as it is now (an unknown workflow is an active lane)."""
    check_workflow(workflow)
    return LaneView.of(_load(ledger, workflow), workflow, config, _last_runs(ledger).get(workflow))


def lanes(ledger: LaneStore, config: Mapping[str, LaneConfig]) -> list[LaneView]:
    """Every configured lane and every lane the ledger holds, by workflow name, each with its
    state, pause, last trip, last enable and last run."""
    topic = f"{Lane.Started.__module__}:{Lane.Started.__qualname__}"
    names = set(config)
    start = 1
    while True:
        page = ledger.recorder.select_notifications(start, PAGE_SIZE, topics=[topic])
        names.update(cast(Lane, ledger.repository.get(n.originator_id)).workflow for n in page)
        if len(page) < PAGE_SIZE:
            break
        start = page[-1].id + 1
    runs = _last_runs(ledger)
    return [
        LaneView.of(_load(ledger, name), name, config.get(name), runs.get(name))
        for name in sorted(names)
    ]


def ensure_open(
    ledger: LaneStore, workflows: Iterable[str | None], *, batch: str | None = None
) -> dict[str, Canary]:
    """THE gate check: refuse (`LanePaused`) before anything is written when any of
    ``workflows`` is paused, naming who paused it, when, why and the trigger that did. One
    read per distinct workflow, fresh on every call. A paused lane's admitted canary batch
    goes through: the canaries admitted are returned, so the run caps itself at their limit."""
    canaries: dict[str, Canary] = {}
    for workflow in sorted({w for w in workflows if w is not None}):
        lane_ = _load(ledger, workflow)
        if lane_ is None or lane_.paused is None:
            continue
        if lane_.canary is not None and batch is not None and lane_.canary.batch == batch:
            canaries[workflow] = lane_.canary
            continue
        pause = lane_.paused
        by = f"stop trigger {pause.trigger}" if pause.trigger else pause.actor
        raise LanePaused(
            f"workflow {workflow!r} is paused (by {by}, at {pause.at.isoformat()}: "
            f"{pause.reason}); nothing was written. See `ledger lanes`; it acts again after "
            f"`ledger enable {workflow}` with the proof its lane asks for",
            workflow=workflow,
        )
    return canaries


def record_run(
    ledger: LaneStore,
    workflow: str,
    batch: str,
    statistics: RunStatistics,
    *,
    trip: Trip | None = None,
    completed: bool,
) -> None:
    """Keep what a run did (counts, its trip, whether it ran to its end), once per batch: the
    past later runs are judged against, and a canary's proof. A second call changes nothing."""
    check_workflow(workflow)
    with suppress(IntegrityError):  # recorded already (a resumed run): the first one stands
        ledger.save(RunRecord.of(workflow, batch, statistics, trip, completed))


def recent_runs(ledger: LaneStore, workflow: str, runs: int) -> list[RunStatistics]:
    """The statistics of the workflow's last ``runs`` recorded runs, oldest first."""
    found: list[RunStatistics] = []
    for batch in reversed(ledger.batches()):
        if len(found) == runs:
            break
        record = _run_record(ledger, batch.name) if batch.workflow == workflow else None
        if record is not None:
            found.append(record.statistics)
    return found[::-1]


def canary_run(ledger: LaneStore, workflow: str) -> CanaryRun | None:
    """The outcome of the lane's last admitted canary, as re-enable evidence (``None`` if it
    has not run to a recorded end)."""
    lane_ = _load(ledger, workflow)
    canary = None if lane_ is None else lane_.last_canary
    record = None if canary is None else _run_record(ledger, canary.batch)
    if record is None:
        return None
    return CanaryRun(
        batch=record.batch,
        actions=record.statistics.total_actions,
        completed=record.completed,
        tripped=record.trip is not None,
        at=record.created_on,
    )


def _run_record(ledger: LaneStore, batch: str) -> RunRecord | None:
    try:
        return cast(RunRecord, ledger.repository.get(run_record_id(batch)))
    except AggregateNotFoundError:
        return None


def _load(ledger: LaneStore, workflow: str) -> Lane | None:
    """The lane as stored now, in one query: lanes are never snapshotted, so the repository's
    snapshot lookup (a second query on every gate check) is skipped, and no cache is used."""
    lane_: Lane | None = None
    for event in ledger.repository.event_store.get(originator_id=lane_id(workflow)):
        lane_ = cast(Lane, event.mutate(lane_))
    return lane_


def _approvals(ledger: LaneStore, workflow: str) -> dict[str, ApprovalRecord]:
    lane_ = _load(ledger, workflow)
    return {} if lane_ is None else lane_.approvals


def _last_runs(ledger: LaneStore) -> dict[str, BatchView]:
    """Each workflow's most recently opened batch."""
    return {batch.workflow: batch for batch in ledger.batches() if batch.workflow is not None}


def _change(ledger: LaneStore, workflow: str, act: Callable[[Lane], T]) -> tuple[Lane, T]:
    """Apply ``act`` to the lane as stored now and save what it recorded. Another process
    saving the same lane first makes the save fail on the version (or, for a new lane, on its
    id): the lane is read again and ``act`` decides again on what that process did."""
    check_workflow(workflow)
    for _ in range(MAX_ATTEMPTS):
        lane_ = _load(ledger, workflow) or Lane.start(workflow)
        result = act(lane_)
        if any(not isinstance(event, Lane.Started) for event in lane_.pending_events):
            try:
                ledger.save(lane_)
            except IntegrityError:
                continue
        return lane_, result
    raise ConcurrencyConflict(
        f"the lane of workflow {workflow!r} kept changing under us; try again"
    )
