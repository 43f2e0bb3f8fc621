"""A receipt's parts: frozen data that prints as JSON (the edge encoding of values).

Pure: `ledger.receipts` reads the ledger and fills them; the CLI and the HTTP API show them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from ledger.domain import Address
from ledger.encoding import encode_value
from ledger.integrity import InclusionReceipt, receipt_json
from ledger.views import ActionView

CheckStatus = Literal["passed", "failed", "unknown"]
Standing = Literal["standing", "compensated", "replayed"]


@dataclass(frozen=True)
class SourceRecord:
    """A record the action was drafted from: the time the automation declared for it
    (``NAME@TIME``), and when the ledger knows it, the version it held when the action was
    recorded and when that version was recorded."""

    record: str
    version: int | None = None
    recorded_at: datetime | None = None
    declared_at: datetime | None = None

    @property
    def at(self) -> datetime | None:
        """The source's time: as declared, else as the ledger recorded it."""
        return self.declared_at or self.recorded_at

    def to_json(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "declared_at": _iso(self.declared_at),
            "version": self.version,
            "recorded_at": _iso(self.recorded_at),
        }


@dataclass(frozen=True)
class ProposedChange:
    """The intent a run declared before writing: the change it proposed and what the write
    expected the target to hold (compare-and-set), and how the intent was settled."""

    operation: str
    values: dict[str, Any]
    unset: tuple[str, ...]
    expected: dict[str, Any]
    declared_at: datetime
    attempts: int  # declarations: 1, plus one per retry after a write that did not land
    outcome: str | None
    settled_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "values": encode_value(self.values),
            "unset": list(self.unset),
            "expected": encode_value(self.expected),
            "declared_at": self.declared_at.isoformat(),
            "attempts": self.attempts,
            "outcome": self.outcome,
            "settled_at": _iso(self.settled_at),
        }


@dataclass(frozen=True)
class Check:
    """One check the action passed or failed, recomputed now from what ``basis`` names."""

    name: str
    status: CheckStatus
    detail: str
    basis: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "basis": self.basis,
        }


@dataclass(frozen=True)
class Review:
    """A person's recorded decision on the action: today, the approval of the rollback plan
    a compensation belongs to (two-person rule)."""

    decision: str
    by: str
    at: datetime
    subject: str

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "by": self.by,
            "at": self.at.isoformat(),
            "subject": self.subject,
        }


@dataclass(frozen=True)
class Correction:
    """A later action that compensated (rolled back) or replayed this one."""

    kind: Literal["compensated", "replayed"]
    fingerprint: str
    entity: str
    version: int
    batch: str
    actor: str | None
    recorded_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "entity": self.entity,
            "version": self.version,
            "batch": self.batch,
            "actor": self.actor,
            "recorded_at": self.recorded_at.isoformat(),
        }


@dataclass(frozen=True)
class LaterEdit:
    """An action by someone else since this one, and the fields in which it competes with a
    rollback of this action (a rollback under ``skip`` leaves the record for review)."""

    version: int
    operation: str
    batch: str
    actor: str | None
    recorded_at: datetime
    fields: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "operation": self.operation,
            "batch": self.batch,
            "actor": self.actor,
            "recorded_at": self.recorded_at.isoformat(),
            "fields": list(self.fields),
        }


@dataclass(frozen=True)
class CorrectionPath:
    """How this action is undone, whether it was, and what stands in the way now."""

    compensation: dict[str, Any]
    status: Standing
    corrections: tuple[Correction, ...]
    current_version: int
    later_edits: tuple[LaterEdit, ...]
    fields_in_the_way: tuple[str, ...]  # the fields a rollback under `fields` cannot restore
    follow_up: str | None  # a rollback contract's manual repair or review, instead of a write

    @property
    def blocked(self) -> bool:
        """Whether a rollback of this action (under the default ``skip``) would leave it."""
        return self.status != "compensated" and bool(self.later_edits)

    def to_json(self) -> dict[str, Any]:
        return {
            "compensation": encode_value(self.compensation),
            "status": self.status,
            "corrections": [c.to_json() for c in self.corrections],
            "current_version": self.current_version,
            "later_edits": [e.to_json() for e in self.later_edits],
            "blocked": self.blocked,
            "fields_in_the_way": list(self.fields_in_the_way),
            "follow_up": self.follow_up,
        }


@dataclass(frozen=True)
class ActionReceipt:
    """Everything needed to explain and repair one action: what, why, the change, the checks,
    the review, the correction path."""

    action: ActionView
    # The lane's receipt_fields, shown first: each one's value before and after the action
    # (ABSENT: the record had no such field), changed by the action or not.
    highlight: dict[str, tuple[Any, Any]]
    sources: tuple[SourceRecord, ...]
    proposed: ProposedChange | None  # None: recorded directly, not written through a run
    checks: tuple[Check, ...]
    review: Review | None
    correction: CorrectionPath
    lane_configured: bool
    # Tamper evidence: this action's event is leaf `proof.leaf_index` of the tree a signed
    # head commits to; checkable offline with the public key (`ledger.integrity.verify_receipt`).
    proof: InclusionReceipt

    @property
    def destination(self) -> Address:
        return Address.parse(self.action.entity)

    def to_json(self) -> dict[str, Any]:
        action = self.action
        where = self.destination
        return {
            "fingerprint": action.fingerprint,
            "what": {
                "entity": action.entity,
                "system": where.system,
                "collection": where.collection,
                "key": where.key,
                "version": action.version,
                "position": action.position,
                "operation": action.operation,
                "workflow": action.workflow,
                "workflow_version": action.workflow_version,
                "batch": action.batch,
                "actor": action.actor,
                "recorded_at": action.recorded_at.isoformat(),
                "effective_at": _iso(action.effective_at),
                "requested": action.requested,
                "moved_to": action.moved_to,
            },
            "why": {
                "trigger": action.trigger,
                "sources": [s.to_json() for s in self.sources],
                "inputs": encode_value(action.inputs),
            },
            "change": {
                "highlight": {
                    name: [encode_value(before), encode_value(after)]
                    for name, (before, after) in self.highlight.items()
                },
                "proposed": None if self.proposed is None else self.proposed.to_json(),
                "final": {
                    name: [encode_value(before), encode_value(after)]
                    for name, (before, after) in action.delta.items()
                },
            },
            "checks": [c.to_json() for c in self.checks],
            "review": None if self.review is None else self.review.to_json(),
            "correction": {
                **self.correction.to_json(),
                "compensates": list(action.compensates),
                "replays": list(action.replays),
            },
            "proof": orjson.loads(receipt_json(self.proof)),
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
