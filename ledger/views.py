"""What the ledger answers with: immutable views that print as tables or JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from ledger.encoding import encode_value
from ledger.values import ABSENT


@dataclass(frozen=True)
class ActionView:
    """One recorded action, as history and receipts show it."""

    entity: str
    entity_id: UUID
    version: int
    position: int | None
    operation: str
    before: dict[str, Any]
    after: dict[str, Any]
    compensation: dict[str, Any]
    inputs: dict[str, Any]
    workflow: str | None
    workflow_version: str | None
    batch: str
    actor: str | None
    trigger: str | None
    sources: tuple[str, ...]
    recorded_at: datetime
    effective_at: datetime | None
    fingerprint: str
    # The ledger's links: what a rollback or replay undid or redid, where a move went.
    compensates: tuple[str, ...] = ()
    replays: tuple[str, ...] = ()
    moved_to: str | None = None
    requested: str | None = None

    @property
    def delta(self) -> dict[str, tuple[Any, Any]]:
        """``{field: (before, after)}``; ABSENT marks a field that did not exist."""
        return {
            name: (self.before.get(name, ABSENT), self.after.get(name, ABSENT))
            for name in sorted(set(self.before) | set(self.after))
        }

    def to_json(self) -> dict[str, Any]:
        links = {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in (
                ("compensates", self.compensates),
                ("replays", self.replays),
                ("moved_to", self.moved_to),
                ("requested", self.requested),
            )
            if value
        }
        return {
            "entity": self.entity,
            "entity_id": str(self.entity_id),
            "version": self.version,
            "position": self.position,
            "operation": self.operation,
            "delta": {
                name: [encode_value(before), encode_value(after)]
                for name, (before, after) in self.delta.items()
            },
            "absent": sorted(
                name
                for name, (before, after) in self.delta.items()
                if before is ABSENT or after is ABSENT
            ),
            "compensation": encode_value(self.compensation),
            "inputs": encode_value(self.inputs),
            "workflow": self.workflow,
            "workflow_version": self.workflow_version,
            "batch": self.batch,
            "actor": self.actor,
            "trigger": self.trigger,
            "sources": list(self.sources),
            "recorded_at": self.recorded_at.isoformat(),
            "effective_at": self.effective_at.isoformat() if self.effective_at else None,
            "fingerprint": self.fingerprint,
            **links,
        }


@dataclass(frozen=True)
class Receipt:
    """The answer to recording a change: the action, and whether it had been recorded before."""

    action: ActionView
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {**self.action.to_json(), "duplicate": self.duplicate}


@dataclass(frozen=True)
class EntityState:
    """A record as the ledger knows it at some point: its fields and the version they come from."""

    entity: str
    exists: bool
    fields: dict[str, Any]
    version: int
    position: int | None = None
    recorded_at: datetime | None = None
    moved_to: str | None = None  # where it lives now, when shown at its old key
    moved_from: tuple[str, ...] = ()  # the keys asked for, when a move was followed here

    def to_json(self) -> dict[str, Any]:
        result = {
            "entity": self.entity,
            "exists": self.exists,
            "version": self.version,
            "position": self.position,
            "recorded_at": self.recorded_at.isoformat() if self.recorded_at else None,
            "fields": encode_value(self.fields),
        }
        if self.moved_to is not None:
            result["moved_to"] = self.moved_to
        if self.moved_from:
            result["moved_from"] = list(self.moved_from)
        return result


@dataclass(frozen=True)
class EntityDiff:
    """How one record differs between two points: ``{field: (at_a, at_b)}``."""

    entity: str
    change: str  # "added", "removed" or "changed"
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "change": self.change,
            "fields": {
                name: [encode_value(a), encode_value(b)] for name, (a, b) in self.fields.items()
            },
        }


@dataclass(frozen=True)
class BatchView:
    """A batch (one workflow run) and how many actions it holds."""

    name: str
    workflow: str | None
    workflow_version: str | None
    actor: str | None
    status: str
    actions: int
    opened_at: datetime
    first_position: int | None = None
    last_position: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "batch": self.name,
            "workflow": self.workflow,
            "workflow_version": self.workflow_version,
            "actor": self.actor,
            "status": self.status,
            "actions": self.actions,
            "opened_at": self.opened_at.isoformat(),
            "first_position": self.first_position,
            "last_position": self.last_position,
        }


@dataclass(frozen=True)
class CheckpointView:
    """A named position in the global log."""

    name: str
    position: int
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.name,
            "position": self.position,
            "created_at": self.created_at.isoformat(),
        }
