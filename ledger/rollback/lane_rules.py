"""What a workflow's lane asks of the rollback plans of its actions.

- **Two persons** (``approval = "two-person"``): a plan is approved by someone other than its
  planner, bound to its seal (`approve_rollback_plan`), and applying refuses it otherwise
  (`ensure_plan_approved`, called by `apply_rollback` before anything is written). The
  planner and the workflows come from the ledger's record of the saved plan
  (`ledger.rollback.records`), never from the file.
- **Too many conflicts** (``rollback_conflicts``): planning pauses the lane
  (`judge_rollback_plan`); the plan is still saved, for the operator to read.
- **A plan on trip** (``on_trip = "plan-rollback"``): when a lane trips, the rollback of the
  tripping batch is planned, saved and recorded, ready for approval (`plan_tripped_rollback`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ledger.application import Ledger
from ledger.errors import ApprovalRefused, ApprovalRequired, InvalidChange
from ledger.lane_control import approve_rollback, ensure_approved, lane
from ledger.lane_evidence import LaneTrip, trip_lanes
from ledger.lanes import ApprovalRecord, LaneConfig
from ledger.ports import Adapter
from ledger.rollback.model import Contract, RollbackScope
from ledger.rollback.plan import RollbackPlan
from ledger.rollback.planning import plan_rollback
from ledger.rollback.records import (
    SavedPlan,
    Verification,
    save_plan,
    saved_by_id,
    saved_plans,
    saving_of,
    verification_of,
)
from ledger.triggers import Trip, check_rollback_plan


@dataclass(frozen=True)
class PlanApproval:
    """A plan approved in the lane of each workflow whose actions it reverses."""

    saved: SavedPlan
    approver: str
    approvals: tuple[ApprovalRecord, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.saved.plan,
            "seal": self.saved.seal,
            "planner": self.saved.planner,
            "approver": self.approver,
            "workflows": list(self.saved.workflows),
            "path": self.saved.path,
            "approved_at": [approval.at.isoformat() for approval in self.approvals],
        }


# "applying": some of it landed and the run did not finish (interrupted, or failed records):
# applying it again resumes it. "verified": finished, and reading back every record it wrote
# found each as planned, with no planned write refused (`Verification.clean`).
Applied = Literal["not applied", "applying", "applied", "verified"]


@dataclass(frozen=True)
class PlanStatus:
    """A saved plan as an operator finds it: its approvals (in its workflows' lanes, for
    exactly its seal) and how far it was applied, from what the ledger recorded."""

    saved: SavedPlan
    approvals: tuple[ApprovalRecord, ...]
    status: Applied
    verification: Verification | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.saved.to_json(),
            "approved_by": sorted({approval.approver for approval in self.approvals}),
            "status": self.status,
            "verification": None if self.verification is None else self.verification.to_json(),
        }


def rollback_plans(ledger: Ledger) -> list[PlanStatus]:
    """Every saved (and recorded) rollback or replay plan, oldest first, with its approvals
    and whether it was applied: where an operator finds the plan a trip made."""
    batches = {batch.name: batch.status for batch in ledger.batches()}
    plans = saved_plans(ledger)
    lanes = {w: lane(ledger, w).approvals for w in {w for s in plans for w in s.workflows}}
    found = []
    for saved in plans:
        approvals = tuple(
            approval
            for workflow in saved.workflows
            for approval in lanes[workflow]
            if approval.plan == saved.plan and approval.seal == saved.seal
        )
        verb = "rollback" if saved.direction == "undo" else "replay"
        state = batches.get(f"{verb}-{saved.plan}")
        verified = verification_of(ledger, saved.plan, saved.seal)
        status: Applied = "not applied" if state is None else "applying"
        if state == "closed" or verified is not None:
            status = "verified" if verified is not None and verified.clean else "applied"
        found.append(PlanStatus(saved, approvals, status, verified))
    return found


def approve_rollback_plan(ledger: Ledger, plan: RollbackPlan | str, approver: str) -> PlanApproval:
    """Approve a saved plan (the plan itself, or its id when it was saved once) in the lane of
    every workflow it reverses, bound to its seal. Refused for a plan this ledger did not
    record as saved (or altered and sealed again since), and for its own planner
    (`ApprovalRefused`). Approving again is no change."""
    saved = saved_by_id(ledger, plan) if isinstance(plan, str) else saving_of(ledger, plan)
    what = f"{'rollback' if saved.direction == 'undo' else 'replay'} plan {saved.plan}"
    if not approver.strip():
        raise InvalidChange(f"approving {what} needs the approver's name (--actor)", field="actor")
    if saved.planner is None:
        raise ApprovalRefused(
            f"{what} was saved without a planner, so no one can be another person; plan again "
            "naming the planner (--actor)"
        )
    if approver == saved.planner:
        raise ApprovalRefused(
            f"{what} was planned by {approver}; someone else must approve it (two-person rule)"
        )
    if not saved.workflows:
        raise InvalidChange(
            f"{what} reverses no workflow's actions (they were recorded without a workflow), "
            "so no lane asks for its approval; apply it",
            field="plan",
        )
    approvals = tuple(
        approve_rollback(
            ledger, workflow, saved.plan, saved.seal, planner=saved.planner, approver=approver
        )
        for workflow in saved.workflows
    )
    return PlanApproval(saved, approver, approvals)


def ensure_plan_approved(
    ledger: Ledger,
    plan: RollbackPlan,
    workflows: Sequence[str],
    lanes: Mapping[str, LaneConfig],
) -> tuple[ApprovalRecord, ...]:
    """Before applying: for each of ``workflows`` (read from history) whose lane asks for
    two persons, the approval of exactly this plan's content; `ApprovalRequired` otherwise."""
    found: list[ApprovalRecord] = []
    for workflow in workflows:
        config = lanes.get(workflow)
        if config is None or config.approval == "none":
            continue  # no approval asked: the seal (a digest of the whole plan) is not needed
        try:
            approval = ensure_approved(ledger, config, plan.id, plan.seal)
        except ApprovalRequired as error:
            raise ApprovalRequired(
                f"{error}; nothing was applied (lane {workflow!r} asks for two persons: save "
                f"the plan with `ledger {plan.verb} plan --out FILE`, have someone other than "
                "its planner approve it, then apply it with --plan FILE)"
            ) from None
        if approval is not None:
            found.append(approval)
    return tuple(found)


def judge_rollback_plan(
    ledger: Ledger, plan: RollbackPlan, lanes: Mapping[str, LaneConfig]
) -> tuple[LaneTrip, ...]:
    """Pause the lane of each workflow of the plan whose ``rollback_conflicts`` limit the
    plan's conflicts exceed, with the plan as evidence."""
    return trip_lanes(
        ledger,
        [lanes[workflow] for workflow in plan.workflows if workflow in lanes],
        lambda triggers: check_rollback_plan(triggers, plan.id, len(plan.conflicts)),
    )


def plan_tripped_rollback(
    ledger: Ledger,
    adapters: dict[str, Adapter],
    workflow: str,
    batch: str,
    *,
    directory: Path,
    trip: Trip | None = None,
    contracts: dict[tuple[str, str], Contract] | None = None,
    collections: Mapping[str, Sequence[str]] | None = None,
) -> RollbackPlan:
    """Plan the rollback of the batch that tripped ``workflow``'s lane (a dry run: nothing is
    written to any target), save it sealed in ``directory`` as ``rollback-<id>.plan`` and
    record it, so an operator finds it (`ledger rollback plans`) and, for a two-person lane,
    approves it. Its planner is the lane itself, so any person may approve it."""
    plan = plan_rollback(
        ledger,
        RollbackScope(batches=(batch,)),
        adapters,
        contracts=contracts,
        collections=collections,
        planner=f"lane {workflow} (on trip)",
    )
    directory.mkdir(parents=True, exist_ok=True)
    why = f"lane {workflow} tripped in batch {batch}"
    save_plan(
        ledger,
        plan,
        directory / f"{plan.batch}.plan",
        reason=why if trip is None else f"{why}: {trip.describe()}",
    )
    return plan
