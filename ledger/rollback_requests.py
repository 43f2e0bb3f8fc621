"""A rollback (or replay) as a person asks for it: which scopes are well formed, which options
go together, planning with the configured systems, and what counts as left for review.

These rules are the same whatever asks (the CLI today, the HTTP API next), so they live here
and the edges only parse and print.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.config import configured_systems, load_contracts, load_systems
from ledger.errors import InvalidChange, NotFound
from ledger.lane_config import load_lanes
from ledger.lane_evidence import LaneTrip
from ledger.ports import Adapter
from ledger.rollback import (
    Direction,
    PlanApproval,
    RollbackPlan,
    RollbackReport,
    RollbackScope,
    SavedPlan,
    apply_rollback,
    approve_rollback_plan,
    judge_rollback_plan,
    plan_rollback,
    plan_tripped_rollback,
    save_plan,
)
from ledger.rollback.records import record_verification, saved_by_id
from ledger.settings import config_path
from ledger.triggers import Trip

TRIP_PLANS = "rollback-plans"  # beside ledger.toml: where a trip's rollback plan is saved
PLANNING_OPTIONS = ("policy", "missing_parent")  # fixed when planning, kept by a saved plan


def rollback_scope(
    batches: Collection[str] = (),
    workflow: str | None = None,
    since: str | None = None,
    system: str | None = None,
    collection: str | None = None,
) -> RollbackScope:
    """A scope, refused when it cannot mean what was asked: a collection is named within its
    system, and a workflow's actions are taken since a point (or within batches)."""
    if collection and not system:
        raise InvalidChange("--collection needs --system", field="--collection")
    if workflow and not since and not batches:
        raise InvalidChange("--workflow needs --since (or --batch)", field="--workflow")
    return RollbackScope(tuple(batches), workflow, since, system, collection)


def load_saved_plan(
    path: Path, *, scope_given: bool, planning_options_given: Collection[str] = ()
) -> RollbackPlan:
    """A plan saved by `plan --out`: it is the scope and keeps the options it was made with,
    so a scope or a planning option given with it is refused (naming the option)."""
    if scope_given:
        raise InvalidChange("give --plan or a scope, not both", field="--plan")
    for name in PLANNING_OPTIONS:
        if name in planning_options_given:
            option = "--" + name.replace("_", "-")
            raise InvalidChange(
                f"{option} applies when planning; a saved plan keeps the one it was made with "
                f"(plan again with {option} to change it)",
                field=option,
            )
    try:
        return read_plan_file(path)
    except InvalidChange as error:
        raise InvalidChange(f"{path}: {error}", field="--plan") from None


def plan_with(
    ledger: Ledger,
    adapters: dict[str, Adapter],
    config: str | None,
    scope: RollbackScope,
    *,
    policy: str,
    direction: Direction,
    missing_parent: str = "skip",
    planner: str | None = None,
) -> RollbackPlan:
    """Plan a scope with the configured systems' contracts and collections; reads only."""
    return plan_rollback(
        ledger,
        scope,
        adapters,
        policy=policy,
        contracts=load_contracts(config),
        direction=direction,
        missing_parent=missing_parent,
        collections={
            system: list(settings.get("collections", {}))
            for system, settings in load_systems(config).items()
        },
        planner=planner,
    )


@dataclass(frozen=True)
class Planned:
    """A plan as `ledger rollback plan` makes it: the lanes its conflicts paused, and where
    it was saved (and recorded) for approval."""

    plan: RollbackPlan
    trips: tuple[LaneTrip, ...]
    saved: SavedPlan | None

    @property
    def for_review(self) -> bool:
        return for_review(self.plan) or bool(self.trips)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.plan.to_json(),
            "trips": [trip.to_json() for trip in self.trips],
            "saved": None if self.saved is None else self.saved.to_json(),
        }


def plan_and_save(
    ledger: Ledger,
    config: str | None,
    scope: RollbackScope,
    *,
    policy: str,
    direction: Direction,
    missing_parent: str = "skip",
    planner: str,
    out: Path | None = None,
    directory: Path | None = None,
    admit: Callable[[RollbackPlan], None] | None = None,
) -> Planned:
    """Plan a scope (nothing written to any target); pause the lane of each of its workflows
    whose ``rollback_conflicts`` limit it exceeds; save it sealed to ``out``, or else as
    ``<batch>.plan`` in ``directory`` (the HTTP API's plans directory), and record it, to be
    approved and applied; not saved when neither is given. A tripped lane's plan is still
    saved: it is the operator's to read.
    ``admit`` may refuse the plan (raise) before it pauses a lane or is saved: whether the
    planner may plan what it touches."""
    lanes = load_lanes(config)
    with configured_systems(config) as adapters:
        made = plan_with(
            ledger,
            adapters,
            config,
            scope,
            policy=policy,
            direction=direction,
            missing_parent=missing_parent,
            planner=planner,
        )
    if admit is not None:
        admit(made)
    trips = judge_rollback_plan(ledger, made, lanes)
    if out is None and directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        out = directory / f"{made.batch}.plan"
    saved = None if out is None else save_plan(ledger, made, out, reason=f"planned by {planner}")
    return Planned(made, trips, saved)


def plans_directory(config: str | None, plans_dir: str | Path | None = None) -> Path:
    """Where plans are saved: ``plans_dir``, or ``rollback-plans/`` beside ``ledger.toml``
    (where a trip's plan goes too)."""
    if plans_dir is not None:
        return Path(plans_dir).absolute()
    return config_path(config).absolute().parent / TRIP_PLANS


def read_plan_file(path: Path) -> RollbackPlan:
    """A saved plan file, read a line at a time (`RollbackPlan.load`)."""
    with path.open("rb") as file:
        return RollbackPlan.load(file)


def load_recorded_plan(ledger: Ledger, plan: str) -> tuple[SavedPlan, RollbackPlan]:
    """The plan recorded as saved under id ``plan``, read from where it was saved and checked
    to be exactly the content recorded (its seal)."""
    saved = saved_by_id(ledger, plan)
    path = Path(saved.path)
    try:
        with path.open("rb") as file:
            loaded = RollbackPlan.load(file)
    except OSError as error:
        raise NotFound(
            f"plan {saved.plan} was saved to {path}, which cannot be read now "
            f"({error.strerror}); plan again"
        ) from None
    except InvalidChange as error:
        raise InvalidChange(f"{path}: {error}", field="plan") from None
    if loaded.seal != saved.seal:
        raise InvalidChange(
            f"{path} no longer holds plan {saved.plan} as it was saved (seal {loaded.seal}, "
            f"recorded {saved.seal}): it was altered; plan again",
            field="plan",
        )
    return saved, loaded


def apply_configured(
    ledger: Ledger,
    config: str | None,
    chosen: RollbackPlan,
    *,
    actor: str,
    on_failure: str = "continue",
    on_progress: Any = None,
) -> RollbackReport:
    """Apply a plan through the configured systems, with their rollback contracts and the
    lanes' rules (`apply_rollback`), and record its verification when the run finished it,
    so a plan's status can say ``verified`` (`ledger rollback apply`, the HTTP API)."""
    lanes = load_lanes(config)
    contracts = load_contracts(config)
    with configured_systems(config) as adapters:
        report = apply_rollback(
            ledger,
            chosen,
            adapters,
            actor=actor,
            on_progress=on_progress,
            on_failure=on_failure,
            contracts=contracts,
            lanes=lanes,
        )
    record_verification(ledger, report)
    return report


def plan_configured(
    db: str | None,
    config: str | None,
    scope: RollbackScope,
    *,
    policy: str,
    direction: Direction,
    missing_parent: str = "skip",
) -> RollbackPlan:
    """Plan a scope in the ledger at ``db``, opening the configured systems for it and closing
    them after; reads only."""
    with configured_systems(config) as adapters:
        return plan_with(
            open_ledger(db, create=False),
            adapters,
            config,
            scope,
            policy=policy,
            direction=direction,
            missing_parent=missing_parent,
        )


def plan_on_trip(
    ledger: Ledger,
    workflow: str,
    batch: str,
    trip: Trip,
    config: str | None,
    directory: Path | None = None,
) -> tuple[RollbackPlan, Path] | None:
    """When ``workflow``'s lane says ``on_trip = "plan-rollback"``, plan the rollback of the
    batch that tripped it with the configured systems, save it sealed under
    ``directory`` (default ``rollback-plans/`` beside ``ledger.toml``) and record it, ready
    for approval; None when the lane asks only for the pause."""
    row = load_lanes(config).get(workflow)
    if row is None or row.on_trip != "plan-rollback":
        return None
    directory = directory or plans_directory(config)
    with configured_systems(config) as adapters:
        plan = plan_tripped_rollback(
            ledger,
            adapters,
            workflow,
            batch,
            directory=directory,
            trip=trip,
            contracts=load_contracts(config),
        )
    return plan, directory / f"{plan.batch}.plan"


def for_review(chosen: RollbackPlan) -> bool:
    """Whether a plan leaves something for a person: conflicts (or an abort because of them),
    manual follow-ups, or cautions to check before applying."""
    return bool(chosen.conflicts or chosen.aborted or chosen.followups or chosen.cautions)


@dataclass(frozen=True)
class Blocker:
    """A conflict that keeps one record of a scope from being reversed."""

    entity: str
    reason: str
    fields: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"entity": self.entity, "reason": self.reason, "fields": list(self.fields)}


@dataclass(frozen=True)
class ScopeCheck:
    """Can a scope be reversed: how many records of each kind, and what blocks the rest."""

    plan: RollbackPlan
    kinds: dict[str, int]
    blockers: tuple[Blocker, ...]

    @classmethod
    def of(cls, chosen: RollbackPlan) -> ScopeCheck:
        kinds: dict[str, int] = {}
        for compensation in chosen.compensations:
            kinds[compensation.kind] = kinds.get(compensation.kind, 0) + 1
        blockers = tuple(Blocker(c.entity, c.reason, tuple(c.fields)) for c in chosen.conflicts)
        return cls(chosen, kinds, blockers)

    @property
    def blocked(self) -> bool:
        return bool(self.blockers or self.plan.aborted)

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.plan.scope.describe(),
            "reversible": self.kinds,
            "blocked": [b.to_json() for b in self.blockers],
            "already_rolled_back": len(self.plan.already_rolled_back),
            "cautions": [c.entity for c in self.plan.cautions],
            "clean": not self.blocked,
        }


def approve_saved(ledger: Ledger, plan_file_or_id: str, approver: str) -> PlanApproval:
    """`ledger rollback approve`: a plan file (its sealed content), or the id of a plan saved
    once, approved by ``approver`` (`approve_rollback_plan`)."""
    path = Path(plan_file_or_id)
    if not path.is_file():
        return approve_rollback_plan(ledger, plan_file_or_id, approver)
    try:
        plan = read_plan_file(path)
    except InvalidChange as error:
        raise InvalidChange(f"{path}: {error}", field="plan") from None
    return approve_rollback_plan(ledger, plan, approver)
