"""The re-enable rule: the proof a paused lane needs before it acts again, judged purely.

Pausing must be easy and re-enabling hard. A lane declares what must hold (`ReenableRule`):
the last reconciliation of some collections is clean, a canary run of N actions completed
without a trip, a named approver other than the pauser and the enabler signed off. The
caller gathers the evidence (`ReenableEvidence`); `check_reenable` says which conditions
hold and which do not, so a refusal names each unmet one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ReenableRule:
    """What must hold before a paused lane may act again."""

    reconciled: tuple[str, ...] = ()  # "system/collection": their last reconciliation is clean
    canary: int | None = None  # a canary run of at least this many actions, with no trip
    approver: bool = False  # someone other than the pauser and the enabler signs off

    @property
    def conditions(self) -> list[str]:
        names = [f"reconciled {collection}" for collection in self.reconciled]
        names += ["canary"] if self.canary is not None else []
        return names + (["approver"] if self.approver else [])


@dataclass(frozen=True)
class Reconciliation:
    """The outcome of a collection's last reconciliation."""

    collection: str
    drifted: int
    checked: int
    at: datetime


@dataclass(frozen=True)
class CanaryRun:
    """A canary run of the lane: how many actions it took, whether it ran to its end, and
    whether a trigger tripped."""

    batch: str
    actions: int
    completed: bool
    tripped: bool
    at: datetime


@dataclass(frozen=True)
class ReenableEvidence:
    """What the enabler brings: reconciliations by collection, the canary, the approver."""

    reconciliations: Mapping[str, Reconciliation] = field(default_factory=dict)
    canary: CanaryRun | None = None
    approver: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "reconciliations": {
                name: {"drifted": r.drifted, "checked": r.checked, "at": r.at}
                for name, r in sorted(self.reconciliations.items())
            },
            "canary": None
            if self.canary is None
            else {
                "batch": self.canary.batch,
                "actions": self.canary.actions,
                "completed": self.canary.completed,
                "tripped": self.canary.tripped,
                "at": self.canary.at,
            },
            "approver": self.approver,
        }


@dataclass(frozen=True)
class ReenableCheck:
    """Each condition of the rule, met or unmet with why."""

    met: tuple[str, ...]
    unmet: tuple[str, ...]

    @property
    def holds(self) -> bool:
        return not self.unmet


def check_reenable(
    rule: ReenableRule,
    evidence: ReenableEvidence,
    *,
    paused_at: datetime,
    paused_by: str | None,
    enabler: str,
) -> ReenableCheck:
    """Which of ``rule``'s conditions ``evidence`` proves; evidence older than the pause
    proves nothing about what happened since."""
    met: list[str] = []
    unmet: list[str] = []
    for collection in rule.reconciled:
        result = evidence.reconciliations.get(collection)
        if result is None:
            unmet.append(f"{collection} has not been reconciled")
        elif result.at < paused_at:
            unmet.append(f"{collection} was last reconciled before the pause ({result.at})")
        elif result.drifted:
            unmet.append(
                f"{collection}'s last reconciliation found {result.drifted} drifted records"
            )
        else:
            met.append(f"{collection} reconciled clean at {result.at}")
    if rule.canary is not None:
        why = _canary_unmet(rule.canary, evidence.canary, paused_at)
        if why is not None:
            unmet.append(why)
        elif evidence.canary is not None:
            met.append(
                f"canary {evidence.canary.batch} completed {evidence.canary.actions} "
                "actions with no trip"
            )
    if rule.approver:
        approver = evidence.approver
        if not approver:
            unmet.append("no approver signed off")
        elif approver in (paused_by, enabler):
            unmet.append(
                f"the approver {approver} must be someone other than the pauser and the enabler"
            )
        else:
            met.append(f"approved by {approver}")
    return ReenableCheck(tuple(met), tuple(unmet))


def _canary_unmet(size: int, canary: CanaryRun | None, paused_at: datetime) -> str | None:
    if canary is None:
        return f"no canary run of {size} actions"
    if canary.at < paused_at:
        return f"canary {canary.batch} ran before the pause"
    if canary.tripped:
        return f"canary {canary.batch} tripped a stop trigger"
    if not canary.completed:
        return f"canary {canary.batch} did not run to its end ({canary.actions} actions)"
    if canary.actions < size:
        return f"canary {canary.batch} took {canary.actions} of {size} actions"
    return None
