"""Lanes: a workflow's operating state, one aggregate per workflow, every change an event.

A lane is active or paused. It is paused by hand (`Lane.pause`) or by a stop trigger (the
trip and its evidence are recorded with the pause); it acts again only once enabled with the
proof its re-enable rule asks for, or by an override that carries its reason. While paused
it may admit one canary batch of a limited size, the proof a canary rule asks for. Rollback
plans of its batches may need a second person's approval, bound to the plan's sealed
content. The aggregate's id derives from the workflow name, so every process finds the same
lane; the state is the fold of its events, pure and without I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from ledger.domain import NAMESPACE
from ledger.encoding import encode_value
from ledger.errors import ApprovalRefused, InvalidChange, LaneNotPaused, ReenableRefused
from ledger.reenable import ReenableCheck, ReenableEvidence, ReenableRule, check_reenable
from ledger.triggers import Triggers, Trip
from ledger.views import BatchView

State = Literal["active", "paused"]
Approval = Literal["none", "two-person"]
OnTrip = Literal["pause", "plan-rollback"]
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@lru_cache(maxsize=256)
def lane_id(workflow: str) -> UUID:
    """The aggregate id of a workflow's lane: deterministic, so any process derives it (once:
    the gate asks on every `record`)."""
    return uuid5(NAMESPACE, f"lane:{workflow}")


def check_workflow(workflow: str) -> None:
    if not _NAME.match(workflow):
        raise InvalidChange(
            f"workflow {workflow!r} must be letters, digits, '_', '.' or '-'", field="workflow"
        )


@dataclass(frozen=True)
class LaneConfig:
    """A lane's row in ``ledger.toml``: who owns it, what it touches, what stops it, who is
    told, what repairs it and what proof re-enables it."""

    workflow: str
    owner: str | None = None
    systems: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()
    repair: str | None = None
    receipt_fields: tuple[str, ...] = ()
    approval: Approval = "none"
    on_trip: OnTrip = "pause"
    triggers: Triggers = field(default_factory=Triggers)
    reenable: ReenableRule = field(default_factory=ReenableRule)


@dataclass(frozen=True)
class PauseRecord:
    """Who paused a lane, when and why; the trigger and its evidence when one tripped."""

    actor: str
    at: datetime
    reason: str
    trigger: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    batch: str | None = None  # the run a trigger stopped


@dataclass(frozen=True)
class EnableRecord:
    """Who enabled a lane, when and why, with the proof or the override."""

    actor: str
    at: datetime
    reason: str
    override: bool
    proved: tuple[str, ...]
    evidence: dict[str, Any]


@dataclass(frozen=True)
class ApprovalRecord:
    """A rollback plan approved by someone other than its planner, bound to its seal."""

    plan: str
    seal: str
    planner: str
    approver: str
    at: datetime


@dataclass(frozen=True)
class Canary:
    """The one batch a paused lane admits, at most ``limit`` actions, to prove itself."""

    batch: str
    limit: int
    actor: str
    at: datetime


class Lane(Aggregate):
    """One workflow's operating state."""

    def __init__(self, workflow: str) -> None:
        self.workflow = workflow
        self.paused: PauseRecord | None = None  # set while paused
        self.last_trip: PauseRecord | None = None
        self.last_enable: EnableRecord | None = None
        self.canary: Canary | None = None
        self.last_canary: Canary | None = None  # kept after a trip or an enable ends it
        self.approvals: dict[str, ApprovalRecord] = {}

    class Started(Aggregate.Created):
        workflow: str

    class Paused(Aggregate.Event):
        actor: str
        reason: str
        trigger: str | None
        evidence: dict[str, Any]
        batch: str | None

        def apply(self, lane: Lane) -> None:
            lane.paused = PauseRecord(
                self.actor, self.timestamp, self.reason, self.trigger, self.evidence, self.batch
            )
            lane.canary = None
            if self.trigger is not None:
                lane.last_trip = lane.paused

    class Enabled(Aggregate.Event):
        actor: str
        reason: str
        override: bool
        proved: list[str]
        evidence: dict[str, Any]

        def apply(self, lane: Lane) -> None:
            lane.paused = None
            lane.canary = None
            lane.last_enable = EnableRecord(
                self.actor,
                self.timestamp,
                self.reason,
                self.override,
                tuple(self.proved),
                self.evidence,
            )

    class CanaryAllowed(Aggregate.Event):
        actor: str
        batch: str
        limit: int

        def apply(self, lane: Lane) -> None:
            lane.canary = lane.last_canary = Canary(
                self.batch, self.limit, self.actor, self.timestamp
            )

    class RollbackApproved(Aggregate.Event):
        plan: str
        seal: str
        planner: str
        approver: str

        def apply(self, lane: Lane) -> None:
            lane.approvals[self.plan] = ApprovalRecord(
                self.plan, self.seal, self.planner, self.approver, self.timestamp
            )

    @classmethod
    def start(cls, workflow: str) -> Lane:
        check_workflow(workflow)
        return cls._create(cls.Started, id=lane_id(workflow), workflow=workflow)

    @property
    def state(self) -> State:
        return "active" if self.paused is None else "paused"

    def pause(
        self, actor: str, reason: str, trip: Trip | None = None, batch: str | None = None
    ) -> bool:
        """Pause the lane; False (and nothing recorded) when it is paused already, unless a
        canary runs: a trip or a pause then ends the canary and is recorded."""
        if not reason.strip():
            raise InvalidChange("a pause needs a reason", field="reason")
        if self.paused is not None and self.canary is None:
            return False
        self.trigger_event(
            self.Paused,
            actor=actor,
            reason=reason,
            trigger=None if trip is None else trip.trigger,
            evidence={} if trip is None else {"rule": trip.rule, **trip.evidence},
            batch=batch,
        )
        return True

    def enable(
        self,
        actor: str,
        reason: str,
        rule: ReenableRule,
        evidence: ReenableEvidence,
        *,
        override: bool = False,
    ) -> ReenableCheck:
        """Let the lane act again, with the rule proved by ``evidence``, or overridden (with
        a reason, recorded as an override)."""
        if self.paused is None:
            raise LaneNotPaused(
                f"workflow {self.workflow!r} is active, not paused; there is nothing to enable"
            )
        check = check_reenable(
            rule, evidence, paused_at=self.paused.at, paused_by=self.paused.actor, enabler=actor
        )
        if override and not reason.strip():
            raise InvalidChange("an override needs a reason, recorded with it", field="reason")
        if not override and not check.holds:
            raise ReenableRefused(
                f"workflow {self.workflow!r} stays paused: "
                + "; ".join(check.unmet)
                + f". Bring the proof, or override with a reason (paused by {self.paused.actor}"
                f" at {self.paused.at.isoformat()}: {self.paused.reason})",
                unmet=check.unmet,
            )
        self.trigger_event(
            self.Enabled,
            actor=actor,
            reason=reason,
            override=override,
            proved=list(check.met),
            evidence={**evidence.to_json(), "unmet": list(check.unmet)},
        )
        return check

    def allow_canary(self, actor: str, batch: str, limit: int) -> None:
        """Admit one batch of at most ``limit`` actions while paused, to prove the lane."""
        if self.paused is None:
            raise LaneNotPaused(
                f"workflow {self.workflow!r} is active; a canary is how a paused lane proves "
                "itself, an active one runs with --limit"
            )
        if limit < 1:
            raise InvalidChange(f"a canary needs at least one action, not {limit}", field="limit")
        self.trigger_event(self.CanaryAllowed, actor=actor, batch=batch, limit=limit)

    def approve(self, plan: str, seal: str, planner: str, approver: str) -> bool:
        """Approve a rollback plan (two-person rule); False when already approved as is."""
        if approver == planner:
            raise ApprovalRefused(
                f"rollback plan {plan} was planned by {approver}; another person must approve it"
            )
        known = self.approvals.get(plan)
        if known is not None and known.seal == seal and known.approver == approver:
            return False
        self.trigger_event(
            self.RollbackApproved, plan=plan, seal=seal, planner=planner, approver=approver
        )
        return True


@dataclass(frozen=True)
class LaneView:
    """What the operator sees of a lane: its state, the pause, the last trip and enable."""

    workflow: str
    state: State
    pause: PauseRecord | None = None
    last_trip: PauseRecord | None = None
    last_enable: EnableRecord | None = None
    canary: Canary | None = None
    approvals: tuple[ApprovalRecord, ...] = ()
    config: LaneConfig | None = None
    last_run: BatchView | None = None

    @classmethod
    def of(
        cls,
        lane: Lane | None,
        workflow: str,
        config: LaneConfig | None = None,
        last_run: BatchView | None = None,
    ) -> LaneView:
        """The view of a lane; a workflow never paused has no aggregate and is active."""
        if lane is None:
            return cls(workflow, "active", config=config, last_run=last_run)
        return cls(
            workflow,
            lane.state,
            lane.paused,
            lane.last_trip,
            lane.last_enable,
            lane.canary,
            tuple(lane.approvals.values()),
            config,
            last_run,
        )

    def to_json(self) -> dict[str, Any]:
        def record(value: Any) -> Any:
            if value is None:
                return None
            return {
                name: item.isoformat() if isinstance(item, datetime) else encode_value(item)
                for name, item in value.__dict__.items()
            }

        return {
            "workflow": self.workflow,
            "state": self.state,
            "pause": record(self.pause),
            "last_trip": record(self.last_trip),
            "last_enable": record(self.last_enable),
            "canary": record(self.canary),
            "approvals": [record(a) for a in self.approvals],
            "owner": None if self.config is None else self.config.owner,
            "last_run": None if self.last_run is None else self.last_run.to_json(),
        }
