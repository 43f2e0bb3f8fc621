"""The rollback and replay routes' bodies, as the OpenAPI document describes them.

Requests carry no values (a scope, policies, a plan id), so pydantic validates them
(`ledger.api.plans.validated`: a failure is the ledger's 422 naming the field). Answers are
the library's ``to_json`` (the CLI's ``--json``) sent as is; these models describe them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ledger.rollback import MissingParent, OnFailure, Policy

Value = Any  # a value in the typed JSON of ledger.encoding


class Scope(BaseModel):
    """Which actions: batches, or a workflow's (or everyone's) actions since a point
    (`ledger rollback plan --batch/--workflow/--since/--system/--collection`)."""

    model_config = ConfigDict(extra="forbid")

    batches: list[str] = Field(default_factory=list, examples=[["lead-sync-2026-11-28"]])
    workflow: str | None = Field(
        None, description="Only this workflow's actions; a token limited to workflows names one."
    )
    since: str | None = Field(None, description="A point: checkpoint, time, position:N.")
    system: str | None = None
    collection: str | None = Field(None, description="Within system.")


class RollbackRequest(Scope):
    """Plan a rollback (saved sealed and recorded, to approve and apply)."""

    policy: Policy = Field("skip", description="Records changed since by someone else.")
    missing_parent: MissingParent = "skip"


class ReplayRequest(RollbackRequest):
    """Check, plan (save) or apply a replay: redo the scope's changes (`ledger replay`)."""

    mode: Literal["check", "plan", "apply"] = Field(
        description="check: what blocks it; plan: save it; apply: the saved 'plan', or the "
        "scope planned now"
    )
    plan: str | None = Field(None, description="apply: a saved replay plan's id (no scope).")
    on_failure: OnFailure = "continue"


class ApprovalRequest(BaseModel):
    """Approve a saved plan; ``seal`` binds the approval to the content the approver read."""

    model_config = ConfigDict(extra="forbid")

    seal: str | None = Field(None, description="The seal the plan was read with (optional).")


class ApplyPlanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    on_failure: OnFailure = Field(
        "continue", description="A record the target refuses: go on, or stop (apply again)."
    )


REQUEST_BODIES: tuple[type[BaseModel], ...] = (
    RollbackRequest,
    ReplayRequest,
    ApprovalRequest,
    ApplyPlanRequest,
)


class Conflict(BaseModel):
    """A record changed since the scope by someone else: left as it is, for review."""

    entity: str
    reason: str
    fields: list[str]
    competing: list[dict[str, Value]]


class Links(BaseModel):
    plan: str
    compensations: str
    runbook: str
    approvals: str
    apply: str


class SavedPlan(BaseModel):
    """One saving of a plan (`ledger rollback plans --json`)."""

    plan: str
    seal: str
    planner: str | None
    workflows: list[str]
    direction: Literal["undo", "redo"]
    path: str
    reason: str
    compensations: int
    conflicts: int
    at: str


class Verification(BaseModel):
    """What the run that finished the plan read back."""

    seal: str
    checked: int
    mismatches: int
    refused: int
    clean: bool
    at: str


class PlanListed(SavedPlan):
    """A saved plan with its approvals and how far it was applied."""

    approved_by: list[str]
    status: Literal["not applied", "applying", "applied", "verified"]
    verification: Verification | None


class PlanSummary(BaseModel):
    """A plan without its compensations (they are paged: ``links.compensations``)."""

    plan: str
    seal: str
    verb: Literal["rollback", "replay"]
    batch: str = Field(description="The batch its compensations are recorded in.")
    scope: dict[str, Any]
    policy: Policy
    missing_parent: MissingParent
    position: int
    planner: str | None
    workflows: list[str]
    aborted: bool
    counts: dict[str, int] = Field(description="compensations, conflicts, followups, ...")
    kinds: dict[str, int] = Field(description="Compensations per kind (restore, re-create...).")
    conflicts: list[Conflict]
    followups: list[dict[str, Any]]
    cautions: list[dict[str, Any]]
    already_rolled_back: list[str]
    links: Links


class Trip(BaseModel):
    workflow: str
    trigger: str
    rule: str
    paused_now: bool


class Planned(PlanSummary):
    """A plan made, saved and recorded (``POST /v1/rollbacks``)."""

    saved: SavedPlan
    trips: list[Trip] = Field(description="Lanes its conflicts paused (rollback_conflicts).")


class PlanDetail(PlanSummary):
    """A saved plan: its summary, approvals and status."""

    saved: SavedPlan
    approved_by: list[str]
    status: Literal["not applied", "applying", "applied", "verified"]
    verification: Verification | None


class CompensationItem(BaseModel):
    entity: str
    operation: Literal["update", "create", "delete"]
    kind: str
    values: dict[str, Value]
    unset: list[str]
    expected: dict[str, Value]
    compensates: list[str]
    position: int
    new_key: bool


class CompensationPage(BaseModel):
    """A page of a plan's compensations in the order they are applied."""

    compensations: list[CompensationItem]
    next_cursor: str | None


class Approved(BaseModel):
    plan: str
    seal: str
    planner: str | None
    approver: str
    workflows: list[str]
    path: str
    approved_at: list[str]


class RollbackOutcome(BaseModel):
    entity: str
    outcome: Literal["restored", "re-created", "deleted", "skipped", "failed", "not attempted"]
    reason: str | None = None
    note: str | None = None
    field: str | None = None
    expected: Value = None
    actual: Value = None
    error: str | None = None
    refused: bool | None = None


class RollbackApplied(BaseModel):
    """What applying did (`ledger rollback apply --json`); ``rollback`` or ``replay`` is the
    plan id."""

    batch: str
    counts: dict[str, int]
    needs_attention: list[str]
    outcomes: list[RollbackOutcome]
    already_applied: bool
    verification: dict[str, Any]
    conflicts: list[Conflict]
    error: str | None = Field(None, description="'refused' or 'mismatch' (409).")
    message: str | None = None


class ScopeCheck(BaseModel):
    """Can this scope be replayed, and what blocks it (`ledger replay check --json`)."""

    scope: str
    reversible: dict[str, int]
    blocked: list[dict[str, Any]]
    already_rolled_back: int
    cautions: list[str]
    clean: bool


class Stopped(BaseModel):
    """``POST /v1/apply`` refused or stopped by the workflow's lane (423): the pause (who,
    when, why, which trigger); when the run had started, its summary (what landed is
    recorded) and the rollback a ``plan-rollback`` lane planned."""

    error: Literal["paused"]
    message: str
    workflow: str | None = None
    paused_by: str | None = None
    paused_at: str | None = None
    reason: str | None = None
    trigger: str | None = None
    batch: str | None = None
    counts: dict[str, int] | None = None
    left: int | None = Field(None, description="Changes not written.")
    stopped: Literal["paused", "tripped"] | None = None
    lane: dict[str, Any] | None = None
    outcomes: list[dict[str, Any]] | None = None
    rollback_plan: dict[str, Any] | None = Field(
        None, description="plan, path, links; or error when it could not be planned."
    )
