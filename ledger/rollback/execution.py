"""Applying a rollback plan: its compensations through `ledger.runs.Run`, each exactly once.

Newest first across all systems, in chunks of one collection, each compare-and-set against the
values the plan expects: a record that moved between planning and applying is skipped and
listed, never overwritten. Each compensation is an ordinary action in the rollback's own batch,
linked to the actions it compensates by the event's ``compensates`` field, so a rollback
resumes after a crash, applies nothing twice, and can itself be rolled back.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

from ledger.application import Ledger
from ledger.changes import Change
from ledger.domain import Address
from ledger.errors import InvalidChange, NotFound
from ledger.lanes import LaneConfig
from ledger.logs import get_logger
from ledger.ports import Adapter
from ledger.relations import Moves, follow_parents
from ledger.rollback.checks import check_against_history
from ledger.rollback.lane_rules import ensure_plan_approved
from ledger.rollback.model import ON_FAILURE, Compensation, Contract, Operation, choose
from ledger.rollback.plan import RollbackPlan, spilled_compensations
from ledger.rollback.report import CompensationResult, Result, RollbackReport, StaleValue
from ledger.rollback.verification import verify_rollback
from ledger.runs import Outcome, Run, Target
from ledger.values import ABSENT

# Compensations per run chunk: per chunk, three commits (intents, target, settle).
APPLY_CHUNK = 2000
ALREADY = "already applied by an earlier run of this rollback"
_DONE: dict[Operation, Result] = {"update": "restored", "create": "re-created", "delete": "deleted"}

log = get_logger(__name__)


def apply_rollback(
    ledger: Ledger,
    rollback: RollbackPlan,
    adapters: dict[str, Adapter],
    *,
    actor: str | None = None,
    on_progress: Any = None,
    on_failure: str = "continue",
    contracts: dict[tuple[str, str], Contract] | None = None,
    lanes: Mapping[str, LaneConfig] | None = None,
) -> RollbackReport:
    """Apply a plan's compensations newest first, each exactly once, then verify.

    The plan is first checked against the ledger's history (`check_against_history`, with
    the rollback ``contracts``): a plan that disagrees is refused and nothing is applied; so
    is a plan that reverses actions of a workflow whose lane (in ``lanes``, the configured
    ``[lanes.WORKFLOW]`` rows) asks for two persons, unless someone other than its planner
    approved exactly this content (`approve_rollback_plan`). A
    compensation the target refuses (``failed``) is listed as needing attention; the rest go
    on (``on_failure="continue"``) or the rollback stops after the chunk holding it
    (``"stop"``), leaving the others ``not attempted``. The rollback's batch closes once
    nothing is left to do; until then applying the plan again resumes it, and afterwards
    applying it again changes nothing and says so."""
    stop_on_failure = choose(on_failure, ON_FAILURE, "failure policy", "on_failure") == "stop"
    workflows = check_against_history(ledger, rollback, contracts)
    ensure_plan_approved(ledger, rollback, workflows, lanes or {})
    report = RollbackReport(rollback)
    conflicted = {conflict.entity: conflict for conflict in rollback.conflicts}
    for c in rollback.compensations if conflicted else ():  # a partial one (policy fields)
        conflicted.pop(c.entity, None)
    for conflict in conflicted.values():
        reason = f"conflict: {conflict.reason} on {', '.join(conflict.fields)}"
        report.results.append(CompensationResult(conflict.entity, "skipped", reason=reason))
    if rollback.aborted:
        return report
    if _closed(ledger, rollback.batch):
        report.finished = True
        for page, landed in _pages_landed(ledger, rollback):
            report.results += [
                _finished(c, _fingerprint(rollback, c.entity) in landed) for c in page
            ]
        return report
    moved = _moved_in_ledger(ledger, rollback)
    log.info(
        "rollback.applying",
        plan=rollback.id,
        batch=rollback.batch,
        compensations=len(rollback.compensations),
        conflicts=len(rollback.conflicts),
    )
    run = Run(ledger, rollback.batch, workflow=rollback.verb, actor=actor, trigger=rollback.verb)
    follower = _ParentFollower(ledger, adapters)
    applied = spilled_compensations()
    moved_to: dict[str, str] = {}  # re-creates the system stored under a key of its choosing
    stopped = unfinished = False
    for target, chunk in _chunks(rollback, adapters, moved, report):
        if stopped:
            report.results.extend(
                CompensationResult(
                    compensation.entity,
                    "not attempted",
                    reason="stopped after a failure (on-failure: stop); apply again to resume",
                )
                for compensation in chunk
            )
            continue
        chunk = follower.follow(target, chunk)
        outcomes = run.apply(
            target,
            [_change(rollback, c, _fingerprint(rollback, c.entity)) for c in chunk],
            chunk_size=APPLY_CHUNK,
            on_progress=on_progress,
        )
        for compensation, outcome in zip(chunk, outcomes, strict=True):
            result = _describe(compensation, outcome, follower.followed.get(compensation.entity))
            report.results.append(result)
            if result.moved_to is not None:
                follower.moves.landed(compensation.entity, result.moved_to)
                moved_to[compensation.entity] = result.moved_to
            if outcome.status in ("applied", "already_applied"):
                applied.append(compensation)
        failed = any(o.status == "failed" for o in outcomes)
        unfinished = unfinished or failed
        stopped = stop_on_failure and failed
    unfinished = unfinished or stopped
    if applied and not unfinished:
        ledger.close_batch(rollback.batch)  # resumed or not: it holds every compensation
    report.verification = verify_rollback(applied, adapters, report, moved=moved_to)
    log.info(
        "rollback.unfinished" if unfinished else "rollback.finished",
        plan=rollback.id,
        batch=rollback.batch,
        results=report.counts,
    )
    return report


def _fingerprint(rollback: RollbackPlan, entity: str) -> str:
    return f"{rollback.verb}:{rollback.id}:{entity}"


def _pages_landed(
    ledger: Ledger, rollback: RollbackPlan
) -> Iterator[tuple[Sequence[Compensation], dict[str, Any]]]:
    """The plan's compensations a page at a time, each page with those of its fingerprints an
    earlier run of this rollback recorded (never every fingerprint of the plan at once)."""
    compensations = rollback.compensations
    for start in range(0, len(compensations), APPLY_CHUNK):
        page = compensations[start : start + APPLY_CHUNK]
        fingerprints = [_fingerprint(rollback, c.entity) for c in page]
        yield page, ledger.index.find_fingerprints(fingerprints)


class _Mine(Container[str]):
    """This rollback's fingerprints (and those of its re-creates under a new key), told by
    their shape (`_fingerprint`: the verb and the plan's id) rather than held as a set."""

    def __init__(self, rollback: RollbackPlan):
        self.prefix = f"{rollback.verb}:{rollback.id}:"

    def __contains__(self, fingerprint: object) -> bool:
        return isinstance(fingerprint, str) and fingerprint.startswith(self.prefix)


def _change(rollback: RollbackPlan, c: Compensation, fingerprint: str) -> Change:
    return Change(
        Address.parse(c.entity),
        c.operation,
        values=c.values,
        unset=c.unset,
        expected=c.expected,
        compensates=c.compensates if rollback.direction == "undo" else (),
        replays=c.compensates if rollback.direction == "redo" else (),
        fingerprint=fingerprint,
    )


def _closed(ledger: Ledger, batch: str) -> bool:
    try:
        return ledger.batch_view(batch).status == "closed"
    except NotFound:
        return False


def _finished(c: Compensation, landed: bool) -> CompensationResult:
    """A compensation of a rollback that was applied to the end before."""
    if landed:
        return CompensationResult(c.entity, _DONE[c.operation], note=ALREADY)
    return CompensationResult(
        c.entity,
        "skipped",
        reason="left as it was when this rollback was applied (it had changed since the "
        "plan was made); plan again to see it",
    )


def _chunks(
    rollback: RollbackPlan,
    adapters: dict[str, Adapter],
    moved: set[str],
    report: RollbackReport,
) -> Iterator[tuple[Target, list[Compensation]]]:
    """The compensations to apply, in plan order, in chunks of one collection; a record that
    references a parent re-created under a new key goes in a later chunk than the parent, so
    the parent's new key is known when the record is written."""
    target: Target | None = None
    chunk: list[Compensation] = []
    new_keys: set[str] = set()
    for c in rollback.compensations:
        if c.entity in moved:
            report.results.append(
                CompensationResult(
                    c.entity,
                    "skipped",
                    reason="a newer action in the ledger since the plan was made",
                    refused=True,
                )
            )
            continue
        address = Address.parse(c.entity)
        adapter = adapters.get(address.system)
        if adapter is None:
            raise InvalidChange(f"system {address.system!r} is not configured", field="system")
        here = Target(adapter, address.collection)
        waits = new_keys and any(
            f"{address.system}/{relation.parent}/"
            f"{c.values.get(relation.field, c.expected.get(relation.field))}" in new_keys
            for relation in adapter.relations(address.collection)
        )
        if chunk and (here != target or len(chunk) == APPLY_CHUNK or waits):
            yield cast(Target, target), chunk
            chunk, new_keys = [], set()
        target = here
        chunk.append(c)
        if c.new_key:
            new_keys.add(c.entity)
    if chunk:
        yield cast(Target, target), chunk


class _ParentFollower:
    """Rewrites the parent fields of re-created and restored records whose parent lives under
    a new key now (see `ledger.relations`)."""

    def __init__(self, ledger: Ledger, adapters: dict[str, Adapter]):
        self.adapters = adapters
        self.moves = Moves(ledger)
        self.followed: dict[str, dict[str, Any]] = {}

    def follow(self, target: Target, chunk: list[Compensation]) -> list[Compensation]:
        adapter, collection = target.adapter, target.collection
        relations = adapter.relations(collection)
        assigns = {r.parent: adapter.assigns_keys(r.parent) for r in relations}
        if not any(assigns.values()):
            return chunk
        # A restore that does not write a parent field leaves it as the target holds it.
        unknown = [
            Address.parse(c.entity).key
            for c in chunk
            if c.operation == "update"
            and any(r.field not in c.values and r.field not in c.expected for r in relations)
        ]
        read = adapter.read(collection, unknown) if unknown else {}
        result = []
        for c in chunk:
            if c.operation == "delete":
                result.append(c)
                continue
            address = Address.parse(c.entity)
            current = {**(read.get(address.key) or {}), **c.expected}
            followed = follow_parents(address, relations, c.values, current, assigns, self.moves)
            if not followed:
                result.append(c)
                continue
            self.followed[c.entity] = followed
            expected = dict(c.expected)
            if c.operation == "update":
                expected.update({f: current.get(f, ABSENT) for f in followed if f not in c.values})
            result.append(replace(c, values={**c.values, **followed}, expected=expected))
        return result


def _moved_in_ledger(ledger: Ledger, rollback: RollbackPlan) -> set[str]:
    """Records changed in the ledger since the plan by anything but this rollback, unless
    this rollback's compensation of them has landed (a landed one is answered as done)."""
    changed = ledger.changed_since(rollback.position, excluding=_Mine(rollback))
    landed = ledger.index.find_fingerprints([_fingerprint(rollback, e) for e in changed])
    return {entity for entity in changed if _fingerprint(rollback, entity) not in landed}


def _describe(
    compensation: Compensation, outcome: Outcome, followed: dict[str, Any] | None
) -> CompensationResult:
    """The run's outcome of one compensation, as the rollback reports it."""
    entity = compensation.entity
    if outcome.status in ("applied", "already_applied"):
        return CompensationResult(
            entity,
            _DONE[compensation.operation],
            moved_to=outcome.moved_to,  # the key the system chose
            parents=followed or None,  # fields pointed at a parent's new key
            note=ALREADY if outcome.status == "already_applied" else None,
        )
    if outcome.status == "stale":
        return CompensationResult(
            entity,
            "skipped",
            reason="changed in the target since the plan was made",
            stale=StaleValue(outcome.field, outcome.expected, outcome.actual),
            refused=True,
        )
    return CompensationResult(entity, "failed", error=outcome.error)
