"""`RollbackPlan`: what a rollback will do, as data to print, save sealed, check and apply.

The plan is computed at one log position (`ledger.rollback.planning`); applying re-checks every
record against the ledger's history (`ledger.rollback.checks`) and the target (compare-and-set).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

from ledger.encoding import encode_value
from ledger.errors import InvalidChange
from ledger.plan_seal import digest, seal, unseal
from ledger.relations import Caution
from ledger.rollback.model import (
    Compensation,
    Conflict,
    Direction,
    FollowUp,
    MissingParent,
    Policy,
    RollbackScope,
)
from ledger.rollback.runbook import render_runbook

PLAN_FORMAT = "changeledger/rollback-plan/2"


def compensation_json(c: Compensation) -> dict[str, Any]:
    """One compensation as the plan's JSON holds it (values in the edge encoding)."""
    return {
        **asdict(c),
        "kind": c.kind,
        "values": encode_value(c.values),
        "expected": encode_value(c.expected),
    }


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback will do, computed at one log position; apply re-checks every record."""

    id: str
    scope: RollbackScope
    policy: Policy
    position: int
    compensations: tuple[Compensation, ...]
    conflicts: tuple[Conflict, ...]
    already_rolled_back: tuple[str, ...] = ()
    aborted: bool = False
    followups: tuple[FollowUp, ...] = ()
    direction: Direction = "undo"  # "undo" (a rollback) or "redo" (a replay)
    missing_parent: MissingParent = "skip"
    cautions: tuple[Caution, ...] = ()  # to check before applying (a parent's deletion)
    planner: str | None = None  # who planned it: a two-person lane's approver must be another
    workflows: tuple[str, ...] = ()  # the workflows whose actions the scope holds (their lanes)

    @property
    def verb(self) -> str:
        return "rollback" if self.direction == "undo" else "replay"

    @property
    def batch(self) -> str:
        return f"{self.verb}-{self.id}"

    @cached_property
    def seal(self) -> str:
        """The digest of the plan's exact content: what an approval is bound to (the seal a
        saved plan carries, `dumps`). Computed once: the plan is frozen."""
        return digest(asdict(self))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scope": asdict(self.scope),
            "policy": self.policy,
            "position": self.position,
            "aborted": self.aborted,
            "compensations": [compensation_json(c) for c in self.compensations],
            "conflicts": [encode_value(asdict(c)) for c in self.conflicts],
            "already_rolled_back": list(self.already_rolled_back),
            "followups": [asdict(f) for f in self.followups],
            "direction": self.direction,
            "missing_parent": self.missing_parent,
            "cautions": [asdict(c) for c in self.cautions],
            "planner": self.planner,
            "workflows": list(self.workflows),
            "seal": self.seal,
        }

    def dumps(self) -> bytes:
        """The plan saved exactly (typed values kept) and sealed, to apply later with `loads`."""
        return seal(PLAN_FORMAT, asdict(self))  # the same digest as `seal`

    @classmethod
    def loads(cls, data: bytes) -> RollbackPlan:
        """A saved plan; refused if it is not one, or if it was altered after it was saved."""
        raw = unseal(PLAN_FORMAT, data, "ledger rollback plan --out")
        try:
            return cls(
                id=raw["id"],
                scope=RollbackScope(**{**raw["scope"], "batches": tuple(raw["scope"]["batches"])}),
                policy=raw["policy"],
                position=raw["position"],
                compensations=tuple(
                    Compensation(
                        **{**c, "unset": tuple(c["unset"]), "compensates": tuple(c["compensates"])}
                    )
                    for c in raw["compensations"]
                ),
                conflicts=tuple(
                    Conflict(
                        **{**c, "fields": tuple(c["fields"]), "competing": tuple(c["competing"])}
                    )
                    for c in raw["conflicts"]
                ),
                already_rolled_back=tuple(raw["already_rolled_back"]),
                aborted=raw["aborted"],
                followups=tuple(FollowUp(**f) for f in raw["followups"]),
                direction=raw["direction"],
                missing_parent=raw["missing_parent"],
                cautions=tuple(Caution(**c) for c in raw["cautions"]),
                planner=raw["planner"],
                workflows=tuple(raw["workflows"]),
            )
        except (KeyError, TypeError) as error:  # sealed, but by another version of the ledger
            raise InvalidChange(
                f"the saved plan does not have this version's shape ({error}); plan again",
                field="plan",
            ) from None

    def runbook(self) -> str:
        """The plan as a human-readable runbook (markdown): `render_runbook`."""
        return render_runbook(self)
