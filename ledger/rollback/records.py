"""Saved rollback plans, recorded: who planned each, its seal, where it was saved, and why.

A plan saved to be approved and applied later (`ledger rollback plan --out`, or the plan a
lane makes when it trips) is recorded as an event of a `PlanRecord`, one aggregate per plan
id. The record is what an approval trusts: the planner and the workflows come from it, not
from the file, and a file whose seal was never recorded (edited and sealed again) is not the
plan that was made. It is also how an operator finds the plans waiting (`ledger rollback
plans`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from uuid import UUID, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from ledger.application import Ledger
from ledger.domain import NAMESPACE
from ledger.errors import ConcurrencyConflict, InvalidChange, NotFound
from ledger.rollback.plan import RollbackPlan
from ledger.rollback.report import RollbackReport

MAX_ATTEMPTS = 10
PAGE_SIZE = 1000


def plan_record_id(plan: str) -> UUID:
    """The aggregate id of a plan's record: derived from the plan id, so any process finds it."""
    return uuid5(NAMESPACE, f"rollback-plan:{plan}")


@dataclass(frozen=True)
class SavedPlan:
    """One saving of a plan: its seal, its planner, the workflows it reverses, where and why."""

    plan: str
    seal: str
    planner: str | None
    workflows: tuple[str, ...]
    direction: str
    path: str
    reason: str
    compensations: int
    conflicts: int
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "seal": self.seal,
            "planner": self.planner,
            "workflows": list(self.workflows),
            "direction": self.direction,
            "path": self.path,
            "reason": self.reason,
            "compensations": self.compensations,
            "conflicts": self.conflicts,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True)
class Verification:
    """A run that finished a saved plan (nothing failed or left unattempted), and what reading
    back every record it wrote found: ``clean`` only when every planned write was made and
    holds the planned state."""

    seal: str
    checked: int  # records written (now or by an earlier run) and read back
    mismatches: int  # of those, holding something else than planned
    refused: int  # planned writes not made: the record had changed since the plan
    at: datetime

    @property
    def clean(self) -> bool:
        return not self.mismatches and not self.refused

    def to_json(self) -> dict[str, Any]:
        return {
            "seal": self.seal,
            "checked": self.checked,
            "mismatches": self.mismatches,
            "refused": self.refused,
            "clean": self.clean,
            "at": self.at.isoformat(),
        }


class PlanRecord(Aggregate):
    """The savings of one plan id (the same content saved by two planners is two seals), and
    the verifications of the runs that finished it."""

    def __init__(self, plan: str) -> None:
        self.plan = plan
        self.saved: list[SavedPlan] = []
        self.verifications: list[Verification] = []

    class Started(Aggregate.Created):
        plan: str

    class Verified(Aggregate.Event):
        seal: str
        checked: int
        mismatches: int
        refused: int

        def apply(self, record: PlanRecord) -> None:
            record.verifications.append(
                Verification(self.seal, self.checked, self.mismatches, self.refused, self.timestamp)
            )

    class Saved(Aggregate.Event):
        seal: str
        planner: str | None
        workflows: list[str]
        direction: str
        path: str
        reason: str
        compensations: int
        conflicts: int

        def apply(self, record: PlanRecord) -> None:
            record.saved.append(
                SavedPlan(
                    record.plan,
                    self.seal,
                    self.planner,
                    tuple(self.workflows),
                    self.direction,
                    self.path,
                    self.reason,
                    self.compensations,
                    self.conflicts,
                    self.timestamp,
                )
            )

    @classmethod
    def start(cls, plan: str) -> PlanRecord:
        return cls._create(cls.Started, id=plan_record_id(plan), plan=plan)

    def save(self, plan: RollbackPlan, path: str, reason: str) -> SavedPlan:
        """Record a saving; the same seal saved at the same path again is one saving."""
        seal = plan.seal
        for known in self.saved:
            if known.seal == seal and known.path == path:
                return known
        self.trigger_event(
            self.Saved,
            seal=seal,
            planner=plan.planner,
            workflows=list(plan.workflows),
            direction=plan.direction,
            path=path,
            reason=reason,
            compensations=len(plan.compensations),
            conflicts=len(plan.conflicts),
        )
        return self.saved[-1]


def save_plan(ledger: Ledger, plan: RollbackPlan, path: Path, *, reason: str) -> SavedPlan:
    """Write the sealed plan to ``path`` and record it (planner, seal, workflows, where and
    ``reason``), so it can be approved and an operator finds it. The file is written first: a
    plan recorded is always one that was saved."""
    written = path.with_name(f".{path.name}.writing")
    with written.open("wb") as file:  # a line per compensation, not the plan in one piece
        plan.write(file)
    written.replace(path)  # never a half-written plan under its name
    where = str(path.resolve())
    for _ in range(MAX_ATTEMPTS):
        record = _load(ledger, plan.id) or PlanRecord.start(plan.id)
        saved = record.save(plan, where, reason)
        if not record.pending_events:
            return saved
        try:
            ledger.save(record)
        except IntegrityError:  # another process recorded a saving of this plan first
            continue
        return saved
    raise ConcurrencyConflict(f"the record of rollback plan {plan.id} kept changing; try again")


def record_verification(ledger: Ledger, report: RollbackReport) -> Verification | None:
    """Keep what a run that finished a recorded plan verified (none for a plan never saved,
    a run that left records failed or unattempted, or one that found the plan applied before:
    its first finishing run was recorded)."""
    plan = report.plan
    unfinished = any(r.outcome in ("failed", "not attempted") for r in report.results)
    if report.finished or plan.aborted or unfinished:
        return None
    for _ in range(MAX_ATTEMPTS):
        record = _load(ledger, plan.id)
        if record is None or plan.seal not in {saved.seal for saved in record.saved}:
            return None
        record.trigger_event(
            PlanRecord.Verified,
            seal=plan.seal,
            checked=sum(1 for r in report.results if r.outcome != "skipped"),
            mismatches=len(report.verification),
            refused=sum(1 for r in report.results if r.refused),
        )
        try:
            ledger.save(record)
        except IntegrityError:  # saved or verified meanwhile by another process: look again
            continue
        return record.verifications[-1]
    raise ConcurrencyConflict(f"the record of rollback plan {plan.id} kept changing; try again")


def verification_of(ledger: Ledger, plan: str, seal: str) -> Verification | None:
    """The last recorded verification of exactly this content of plan ``plan``."""
    record = _load(ledger, plan)
    found = [v for v in (() if record is None else record.verifications) if v.seal == seal]
    return found[-1] if found else None


def saving_of(ledger: Ledger, plan: RollbackPlan) -> SavedPlan:
    """The recorded saving of exactly this plan (its seal), or a refusal saying what to do."""
    record = _load(ledger, plan.id)
    for saved in () if record is None else record.saved:
        if saved.seal == plan.seal:
            return saved
    raise InvalidChange(
        f"{plan.verb} plan {plan.id} is not a plan this ledger recorded as saved (never saved "
        f"with `ledger {plan.verb} plan --out`, or altered and sealed again since); plan again "
        "with --out",
        field="plan",
    )


def saved_by_id(ledger: Ledger, plan: str) -> SavedPlan:
    """The one recorded saving of plan id ``plan``; refused when there is none, or several
    seals (then the plan file says which)."""
    record = _load(ledger, plan)
    if record is None or not record.saved:
        raise NotFound(
            f"no saved rollback plan {plan!r}; see `ledger rollback plans`, or give the plan file"
        )
    seals = {saved.seal for saved in record.saved}
    if len(seals) > 1:
        raise InvalidChange(
            f"rollback plan {plan} was saved {len(seals)} times with different content (by "
            f"{', '.join(sorted({str(s.planner) for s in record.saved}))}); give the plan file",
            field="plan",
        )
    return record.saved[-1]


def saved_plans(ledger: Ledger) -> list[SavedPlan]:
    """Every recorded saving of a plan, oldest first."""
    topic = f"{PlanRecord.Started.__module__}:{PlanRecord.Started.__qualname__}"
    found: list[SavedPlan] = []
    start = 1
    while True:
        page = ledger.recorder.select_notifications(start, PAGE_SIZE, topics=[topic])
        for notification in page:
            record: Any = ledger.repository.get(cast(UUID, notification.originator_id))
            found += cast(PlanRecord, record).saved
        if len(page) < PAGE_SIZE:
            break
        start = page[-1].id + 1
    return sorted(found, key=lambda saved: saved.at)


def _load(ledger: Ledger, plan: str) -> PlanRecord | None:
    try:
        return cast(PlanRecord, ledger.repository.get(plan_record_id(plan)))
    except AggregateNotFoundError:
        return None
