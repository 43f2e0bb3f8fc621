"""The bodies of the operations routes (reconcile, lanes, receipts, verify, digest), as the
OpenAPI document describes them.

Request bodies here hold no record values (names, reasons, options), so pydantic validates
them, strictly (no ``"true"`` for true) and refusing unknown fields, after the ledger's own
strict JSON reader parsed them (`parsed`). Responses are the JSON the CLI's ``--json``
prints, sent as is; these models describe it.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ledger.api.models import Batch, Value
from ledger.errors import InvalidChange

M = TypeVar("M", bound=BaseModel)
Side = Literal["ledger", "target"]


def parsed(model: type[M], data: dict[str, Any]) -> M:
    """``data`` (a parsed JSON object) as ``model``; the first error names its field path."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        path = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidChange(f"{path}: {first['msg']}", field=path) from None


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# Reconcile -----------------------------------------------------------------------------


class ReconcileCheckRequest(_Request):
    """Compare a collection in the ledger with the system (`ledger reconcile check`)."""

    system: str = Field(min_length=1, examples=["crm"])
    collection: str = Field(min_length=1, examples=["contacts"])
    at: str | None = Field(None, description="The ledger as of a point (not recorded then).")
    tracked_only: bool = Field(False, description="Ignore records the ledger never saw.")
    all_fields: bool = Field(False, description="Also compare fields the ledger never touched.")
    null_is_absent: bool = Field(False, description="A null equals an absent field (SQL).")
    limit: int = Field(100, ge=1, le=1000, description="Drifted records per page.")
    cursor: str | None = Field(None, description="next_cursor of the previous page.")


class ReconcilePlanRequest(ReconcileCheckRequest):
    """Plan the corrections under an explicit policy (`ledger reconcile plan`)."""

    policy: Side = Field(
        description="ledger: correct the target; target: adopt the target's values."
    )
    field_rules: dict[str, Side] = Field(
        default_factory=dict, description="A field's winner, overriding policy."
    )
    delete_unknown: bool = Field(False, description="Policy ledger: delete unknown records.")


class ReconcileApplyRequest(ReconcilePlanRequest):
    """Plan now and apply the plan (`ledger reconcile apply`); ``limit`` bounds the lists."""

    cursor: None = Field(None, description="Not taken: an apply is one answer.")


class DriftModel(BaseModel):
    """One drifted record; each field's ``ledger`` and ``target`` value (a side that lacks the
    field is left out)."""

    key: str
    kind: Literal["missing_in_target", "unknown_to_ledger", "fields", "before_differs"]
    ledger_version: int
    fields: dict[str, dict[str, Value]]


class DriftReportModel(BaseModel):
    """Counts of drift per kind and field, and the first few drifted records (`samples`)."""

    system: str
    collection: str
    at: str | None
    clean: bool
    ledger_records: int
    target_records: int
    drifted: int
    records: int
    counts: dict[str, int]
    field_counts: dict[str, int]
    samples: list[DriftModel]
    samples_truncated: bool


class LaneTripModel(BaseModel):
    workflow: str
    trigger: str
    rule: str
    paused_now: bool


class ReconciliationModel(BaseModel):
    """A check recorded as lane evidence, and the lanes its drift paused."""

    collection: str
    drifted: int
    checked: int
    at: str
    actor: str
    trips: list[LaneTripModel]


class DriftPage(DriftReportModel):
    """`ledger reconcile check --json`, and a page of the drifted records in key order."""

    recorded: ReconciliationModel | None
    drifts: list[DriftModel]
    next_cursor: str | None


class StepCounts(BaseModel):
    corrections: int
    adoptions: int
    skipped: int


class PlanPage(BaseModel):
    """`ledger reconcile plan --json`, its steps a page at a time (records in key order)."""

    plan: str
    batch: str
    system: str
    collection: str
    policy: Side
    field_rules: dict[str, Side]
    delete_unknown: bool
    scope: dict[str, Any]
    position: int
    observed_at: str
    corrections: list[dict[str, Any]] = Field(
        description="key, operation, set, unset, expected (what the target held)"
    )
    adoptions: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    report: DriftReportModel
    steps: StepCounts = Field(description="How many of each the whole plan holds.")
    next_cursor: str | None


class ReconcileApplied(BaseModel):
    """`ledger reconcile apply --json`: what became of each record, the comparison made again
    afterwards (recorded), and the plan's first page; lists hold at most ``limit`` items."""

    plan: PlanPage
    batch: str
    counts: dict[str, int]
    refused: list[dict[str, Any]]
    refused_total: int
    skipped: list[dict[str, Any]]
    skipped_total: int
    verification: DriftReportModel
    recorded: ReconciliationModel | None
    error: str | None = Field(None, description="'refused' when any correction was refused.")
    message: str | None = None


# Lanes ---------------------------------------------------------------------------------


class LaneModel(BaseModel):
    """A lane (`ledger lane --json`): state, the pause, the last trip, enable and run."""

    workflow: str
    state: Literal["active", "paused"]
    pause: dict[str, Any] | None
    last_trip: dict[str, Any] | None
    last_enable: dict[str, Any] | None
    canary: dict[str, Any] | None
    approvals: list[dict[str, Any]]
    owner: str | None
    last_run: Batch | None


class PauseRequest(_Request):
    reason: str = Field(min_length=1, description="Why: recorded, shown at the gate (423).")


class Paused(BaseModel):
    paused_now: bool = Field(description="False: it was paused already; nothing changed.")
    lane: LaneModel


class EnableRequest(_Request):
    reason: str = Field(min_length=1, description="Why it may act again: recorded.")
    approver: str | None = Field(
        None, description="Who signed off: someone other than the pauser and this token."
    )
    override: bool = Field(False, description="Enable without the proof; recorded as such.")


class Enabled(BaseModel):
    lane: LaneModel
    met: list[str] = Field(description="The conditions proved.")
    unmet: list[str] = Field(description="The conditions overridden (override only).")


class CanaryRequest(_Request):
    batch: str = Field(min_length=1, description="The one batch the paused lane admits.")
    limit: int = Field(ge=1, description="Its most actions.")


# Evidence ------------------------------------------------------------------------------


class InclusionProof(BaseModel):
    """The receipt file of `ledger receipt --proof-out`: checkable offline with the public key
    (`ledger.integrity.parse_receipt`, `verify_receipt`)."""

    format: str
    position: int
    leaf_index: int
    leaf_hash: str
    proof: list[str]
    head: dict[str, Any]


class ActionReceiptModel(BaseModel):
    """`ledger receipt --json`: what, why, the change, checks, correction path, proof."""

    fingerprint: str
    what: dict[str, Any]
    why: dict[str, Any]
    change: dict[str, Any]
    checks: list[dict[str, Any]]
    review: dict[str, Any] | None
    correction: dict[str, Any]
    proof: InclusionProof


class VerifyRequest(_Request):
    digest: dict[str, Any] | None = Field(
        None, description="A digest taken earlier (GET /v1/digest): also prove the log grew."
    )
    public_key: str | None = Field(
        None, description="The ledger's public key (PEM) kept apart; default its own."
    )


class HistoryBreakModel(BaseModel):
    kind: str
    position: int | None
    leaf: int | None
    event_id: str | None
    event_version: int | None
    detail: str


class VerifyModel(BaseModel):
    """`ledger verify --json`; a broken history (409) also carries ``error`` and ``message``
    (a digest refused before the log is read carries only those)."""

    ok: bool | None = None
    size: int | None = None
    root: str | None = None
    heads_checked: int | None = None
    digest_size: int | None = None
    consistency: list[str] | None = None
    first_break: HistoryBreakModel | None = None
    error: str | None = None
    message: str | None = None


class DigestModel(BaseModel):
    """The digest file of `ledger digest`: a signed head of the whole log and the public key."""

    format: str
    size: int
    root: str
    signed_at: str
    key_id: str
    public_key: str
    signature: str
