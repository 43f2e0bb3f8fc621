"""Rolling back: a plan first (pure, printable, saveable), then compensations applied exactly once.

Planning reads the ledger and the targets and changes nothing. For every record a scope
touched, the net compensation restores the state from before the scope's earliest action on
it, for the fields the scope touched. A record someone else changed afterwards — a later
action outside the scope, or drift the target shows — is a conflict, handled by the policy:

- ``skip`` (default): record-level — a record anything else changed since the scope acted on
  it (a later action, or drift in any field the ledger knows, touched by the scope or not) is
  left exactly as it is and listed for review; applying, the whole record must still be as
  planning saw it;
- ``fields``: restore the scope's fields that nobody else changed since, keep the rest;
- ``force``: restore anyway (still compare-and-set against what planning saw);
- ``abort``: plan nothing if any conflict exists.

The modules, innermost first: `model` (the plan's parts and the policy types), `planner` (the
pure decision for one record, from its history and its target image), `contracts`,
`ordering` (relations between collections), `runbook`, `plan` (`RollbackPlan`), `report`
(`RollbackReport` and its typed results), `planning` (`plan_rollback`: the reads around the
planner), `records` (saved plans, recorded with their planner and seal), `checks` (a saved
plan against history), `lane_rules` (what a workflow's lane asks of its plans: two-person
approval, the conflict trigger, a plan on trip), `execution` (`apply_rollback`) and
`verification` (`verify_rollback`).
"""

from ledger.rollback.checks import check_against_history
from ledger.rollback.execution import apply_rollback
from ledger.rollback.lane_rules import (
    PlanApproval,
    PlanStatus,
    approve_rollback_plan,
    ensure_plan_approved,
    judge_rollback_plan,
    plan_tripped_rollback,
    rollback_plans,
)
from ledger.rollback.model import (
    DIRECTIONS,
    MISSING_PARENT,
    ON_FAILURE,
    POLICIES,
    REPAIRS,
    Compensation,
    Conflict,
    Contract,
    Direction,
    FollowUp,
    MissingParent,
    OnFailure,
    Policy,
    RollbackScope,
)
from ledger.rollback.plan import RollbackPlan
from ledger.rollback.planning import plan_rollback
from ledger.rollback.records import SavedPlan, save_plan, saved_plans
from ledger.rollback.report import CompensationResult, Mismatch, RollbackReport
from ledger.rollback.verification import verify_rollback

__all__ = [
    "DIRECTIONS",
    "MISSING_PARENT",
    "ON_FAILURE",
    "POLICIES",
    "REPAIRS",
    "Compensation",
    "CompensationResult",
    "Conflict",
    "Contract",
    "Direction",
    "FollowUp",
    "Mismatch",
    "MissingParent",
    "OnFailure",
    "PlanApproval",
    "PlanStatus",
    "Policy",
    "RollbackPlan",
    "RollbackReport",
    "RollbackScope",
    "SavedPlan",
    "apply_rollback",
    "approve_rollback_plan",
    "check_against_history",
    "ensure_plan_approved",
    "judge_rollback_plan",
    "plan_rollback",
    "plan_tripped_rollback",
    "rollback_plans",
    "save_plan",
    "saved_plans",
    "verify_rollback",
]
