"""The HTTP API's bodies, as the OpenAPI document describes them.

Responses are the very JSON the CLI's ``--json`` prints (each view's ``to_json``), sent as is;
these models only describe it. Request bodies are read by the ledger's own strict parser
(`ledger.values.parse_json`: exact numbers, duplicate keys refused) and `Change.from_mapping`,
not by pydantic, which would turn ``1.10`` into a float; their models here describe them.
Values are the typed JSON of `ledger.encoding` (``{"$decimal": "1.10"}``, ...), hence ``Any``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Value = Any  # a value in the typed JSON of ledger.encoding


@dataclass(frozen=True)
class Answer:
    """A response as data: what an idempotent request stores and replays."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Problem(BaseModel):
    """Every error: a kind to branch on, a message for people, the field when one is wrong."""

    error: str = Field(description="What kind of error, to branch on (e.g. stale, paused).")
    message: str
    field: str | None = Field(None, description="The path of the input that was wrong.")
    expected: Value = Field(None, description="What the request assumed (stale) or expected.")
    actual: Value = Field(None, description="What the ledger or the system holds (stale).")
    record: str | None = None
    workflow: str | None = None
    paused_by: str | None = None
    paused_at: str | None = None
    reason: str | None = None
    trigger: str | None = None
    key: str | None = Field(None, description="The Idempotency-Key, when it is the problem.")
    unmet: list[str] | None = Field(None, description="The re-enable conditions not met.")
    correlation_id: str | None = Field(None, description="Quote it to the operator (500).")


class Health(BaseModel):
    status: Literal["ok"]
    version: str


class Action(BaseModel):
    """One recorded action (`ledger history --json`)."""

    entity: str
    entity_id: str
    version: int
    position: int | None
    operation: str
    delta: dict[str, list[Value]]
    absent: list[str]
    compensation: dict[str, Value]
    inputs: dict[str, Value]
    workflow: str | None
    workflow_version: str | None
    batch: str
    actor: str | None
    trigger: str | None
    sources: list[str]
    recorded_at: str
    effective_at: str | None
    fingerprint: str
    compensates: list[str] | None = None
    replays: list[str] | None = None
    moved_to: str | None = None
    requested: str | None = None


class Receipt(Action):
    """An action as recording answers it (`ledger record --json`)."""

    duplicate: bool


class RecordState(BaseModel):
    """A record at a point (`ledger state --json`)."""

    entity: str
    exists: bool
    version: int
    position: int | None
    recorded_at: str | None
    fields: dict[str, Value]
    moved_to: str | None = None
    moved_from: list[str] | None = None


class CollectionPage(BaseModel):
    """A page of a collection at a point, in key order; follow ``next_cursor`` until null."""

    records: list[RecordState]
    next_cursor: str | None


class Difference(BaseModel):
    """How a record differs between two points (`ledger diff --json`)."""

    entity: str
    change: Literal["added", "removed", "changed"]
    fields: dict[str, list[Value]]


class Batch(BaseModel):
    batch: str
    workflow: str | None
    workflow_version: str | None
    actor: str | None
    status: Literal["open", "closed"]
    actions: int
    opened_at: str
    first_position: int | None
    last_position: int | None


class Checkpoint(BaseModel):
    checkpoint: str
    position: int
    created_at: str


class ChangeLine(BaseModel):
    """One change: a line of a change file (`ledger record`, `ledger import`, `ledger apply`)."""

    model_config = ConfigDict(extra="forbid")

    entity: str = Field(description="system/collection/key", examples=["crm/contacts/42"])
    op: Literal["create", "update", "delete"]
    set: dict[str, Value] | None = None
    unset: list[str] | None = None
    before: dict[str, Value] | None = Field(
        None, description="What the record held before; filled in by the ledger when omitted."
    )
    expected: dict[str, Value] | None = None
    inputs: dict[str, Value] | None = None
    workflow: str | None = None
    workflow_version: str | None = None
    batch: str | None = None
    actor: str | None = Field(None, description="If given, must be the token's name.")
    trigger: str | None = None
    sources: list[str] | None = None
    effective_at: str | None = None
    fingerprint: str | None = None


class ChangeBatch(BaseModel):
    """Several changes recorded all or nothing as one batch (`ledger import`)."""

    model_config = ConfigDict(extra="forbid")

    changes: list[ChangeLine] = Field(min_length=1)
    batch: str | None = Field(None, description="Default: named for the changes (retry-safe).")
    workflow: str | None = None
    workflow_version: str | None = None
    trigger: str | None = None
    keep_open: bool = False


class Recorded(BaseModel):
    """What recording a batch did (`ledger import --json`), with each receipt."""

    batch: str | None
    batches: list[str]
    recorded: int
    already_recorded: int
    closed: bool
    receipts: list[Receipt]


class ApplyRequest(BaseModel):
    """Changes written through a configured system's adapter (`ledger apply`)."""

    model_config = ConfigDict(extra="forbid")

    system: str
    batch: str = Field(description="The run's id; sending it again applies nothing twice.")
    changes: list[ChangeLine] = Field(min_length=1)
    workflow: str | None = None
    workflow_version: str | None = None
    trigger: str | None = None
    limit: int | None = Field(None, ge=1, description="Canary: only the first N actions.")
    stop_on_stale: bool = False
    keep_open: bool = False


class Outcome(BaseModel):
    """What became of one change; a stale one names the field and both values."""

    entity: str
    status: Literal["applied", "already_applied", "stale", "failed", "pending"]
    version: int | None = None
    position: int | None = None
    moved_to: str | None = None
    field: str | None = None
    expected: Value = None
    actual: Value = None
    error: str | None = None


class Applied(BaseModel):
    """What applying did (`ledger apply --json`), with every outcome in order."""

    batch: str
    counts: dict[str, int]
    refused: list[Outcome]
    conflicts: list[Outcome]
    outcomes: list[Outcome]
    left: int
    stopped: Literal["canary limit", "stale"] | None
    closed: bool
    elapsed_seconds: float
    retries: int
    waited_seconds: float
    warnings: list[str]
    error: str | None = Field(None, description="'refused' when any change was not applied.")
    message: str | None = None
