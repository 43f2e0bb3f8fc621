"""A receipt's checks and review, each recomputed from recorded facts (none is stored).

The record's history proves the before-values; the intent declared before a write proves the
compare-and-set and what was proposed; the lane's events the gate; the batch's run record the
stop triggers; the lane row and the rollback contract (as configured now) the guards. Each
`Check` names its basis; docs/receipts.md lists them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import cast

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from ledger.application import Ledger
from ledger.domain import Entity
from ledger.lane_control import lane
from ledger.lanes import Lane, LaneConfig, lane_id
from ledger.receipts.model import Check, CheckStatus, ProposedChange, Review, SourceRecord
from ledger.rollback.contracts import held_by_contract, protected_kept
from ledger.rollback.model import Contract, ScopedAction
from ledger.rollback.planner import state_at
from ledger.run_records import RunRecord, run_record_id
from ledger.triggers import RunStatistics, Triggers, check_run
from ledger.values import ABSENT, same
from ledger.views import ActionView

ROLLBACK_BATCH = re.compile(r"^(rollback|replay)-(?P<plan>[0-9a-f]+)$")


def recorded_checks(
    history: Sequence[Entity.Action], view: ActionView, proposed: ProposedChange | None
) -> list[Check]:
    """What the record's history proves: the before-values are the ledger's, the write was
    compare-and-set against what the target held, and it wrote what was proposed."""
    before, existed = state_at(history, view.version - 1)
    checks = []
    if view.version > 1:
        differ = [
            name for name in view.before if not same(view.before[name], before.get(name, ABSENT))
        ]
        checks.append(
            Check(
                "before-values",
                "failed" if differ else "passed",
                f"{', '.join(differ)} differ from the record's version {view.version - 1}"
                if differ
                else f"the before-values are the record's version {view.version - 1} in the ledger",
                "the record's history",
            )
        )
    if proposed is None:
        return checks
    image = before if existed else None
    if proposed.operation == "create":
        held = image is None
        detail = "a create: the record did not exist" if held else "a create of an existing record"
    else:
        wrong = [
            name
            for name, value in proposed.expected.items()
            if image is None or not same(image.get(name, ABSENT), value)
        ]
        held = not wrong
        names = ", ".join(sorted(proposed.expected)) or "(record)"
        detail = (
            f"the target held the expected {names} when written"
            if held
            else f"the target did not hold the expected {', '.join(wrong)}"
        )
    checks.append(
        Check(
            "compare-and-set",
            "passed" if held else "failed",
            detail,
            "the intent declared before the write; the before-image settled with it",
        )
    )
    unwritten = [
        name
        for name, value in proposed.values.items()
        if not same(view.after.get(name, ABSENT), value)
    ] + [name for name in proposed.unset if name in view.after]
    if proposed.operation == "delete":
        unwritten = ["(record)"] if view.after else []
    checks.append(
        Check(
            "written-as-proposed",
            "failed" if unwritten else "passed",
            f"the recorded change differs from the intent in {', '.join(unwritten)}"
            if unwritten
            else "the recorded change is the one the intent proposed",
            "the intent and the action",
        )
    )
    return checks


def lane_checks(
    ledger: Ledger, view: ActionView, proposed: ProposedChange | None, config: LaneConfig | None
) -> list[Check]:
    """The lane gate as it stood when the write was let through (the intent's declaration;
    the recording, for an action recorded directly), and the run's stop triggers."""
    if view.workflow is None or ROLLBACK_BATCH.match(view.batch):
        return []  # a rollback's own actions pass no lane: its approval is their review
    moment = view.recorded_at if proposed is None else proposed.declared_at
    state: Lane | None = None
    events = ledger.repository.event_store.get(originator_id=lane_id(view.workflow))
    for event in cast("Iterable[Aggregate.Event]", events):
        if event.timestamp > moment:
            break
        state = cast(Lane, event.mutate(state))
    basis = "the lane's events up to " + moment.isoformat()
    if state is None or state.paused is None:
        enabled = state.last_enable if state is not None else None
        detail = f"workflow {view.workflow!r} was active"
        if enabled is not None:
            detail += f" (enabled by {enabled.actor} at {enabled.at.isoformat()})"
        checks = [Check("lane-gate", "passed", detail, basis)]
    elif state.canary is not None and state.canary.batch == view.batch:
        detail = (
            f"workflow {view.workflow!r} was paused; this batch was its admitted canary "
            f"(at most {state.canary.limit} actions, allowed by {state.canary.actor})"
        )
        checks = [Check("lane-gate", "passed", detail, basis)]
    else:
        pause = state.paused
        detail = (
            f"workflow {view.workflow!r} was paused by {pause.actor} at "
            f"{pause.at.isoformat()} ({pause.reason}), yet this was written"
        )
        checks = [Check("lane-gate", "failed", detail, basis)]
    try:
        run = cast(RunRecord, ledger.repository.get(run_record_id(view.batch)))
    except AggregateNotFoundError:
        if config is not None:
            checks.append(
                Check("stop-triggers", "unknown", "no run record for this batch", "run records")
            )
        return checks
    if run.trip is not None:
        detail = f"the run tripped {run.trip['trigger']}: {run.trip['rule']}"
        checks.append(Check("stop-triggers", "failed", detail, f"the run record of {run.batch}"))
    else:
        ended = "ran to its end" if run.completed else "stopped before its end"
        detail = f"no stop trigger tripped; the run {ended}"
        checks.append(Check("stop-triggers", "passed", detail, f"the run record of {run.batch}"))
    return checks


def guard_checks(
    view: ActionView, triggers: Triggers, sources: Sequence[SourceRecord]
) -> list[Check]:
    """The lane's field guards and source age, judged on this one action (the lane row as
    configured now, not necessarily when the action ran)."""
    checks = []
    if triggers.fields:
        guards = Triggers(fields=triggers.fields)
        statistics = RunStatistics.watching(guards)
        statistics.add_action(view.operation, view.entity, view.delta)
        trip = check_run(guards, statistics)
        detail = trip.rule if trip is not None else f"{', '.join(sorted(triggers.fields))} guarded"
        status: CheckStatus = "failed" if trip is not None else "passed"
        checks.append(Check("field-guards", status, detail, "the lane row's field guards now"))
    if triggers.source_age is not None:
        dated = {s.record: s.at for s in sources if s.at is not None}
        if not dated:
            detail = "no source has a declared time or a version in the ledger: nothing to judge"
            checks.append(Check("source-age", "unknown", detail, "the lane row's source_age"))
        else:
            ages = Triggers(source_age=triggers.source_age)
            statistics = RunStatistics()
            statistics.add_action(view.operation, view.entity, sources=dated)
            trip = check_run(ages, statistics, now=view.recorded_at)
            checks.append(
                Check(
                    "source-age",
                    "failed" if trip is not None else "passed",
                    trip.rule if trip is not None else f"sources within {triggers.source_age}",
                    "the sources' declared (else recorded) times; the lane row's source_age",
                )
            )
    return checks


def contract_check(view: ActionView, history: Sequence[Entity.Action], contract: Contract) -> Check:
    held = follow_up(view, history, contract)
    return Check(
        "rollback-contract",
        "failed" if held else "passed",
        held or "reversible by a write within the collection's rollback contract",
        "the collection's rollback contract",
    )


def follow_up(
    view: ActionView, history: Sequence[Entity.Action], contract: Contract | None
) -> str | None:
    """What the collection's rollback contract leaves to a person instead of a write."""
    if contract is None:
        return None
    scoped = [ScopedAction(view.version, view.position or 0, view.fingerprint)]
    now = datetime.now(UTC)
    held = held_by_contract(view.entity, history, scoped, contract, now) or protected_kept(
        view.entity, history, scoped, contract
    )
    if held is None:
        return None
    owner = f" (owner: {held.owner})" if held.owner else ""
    return f"{held.action}: {held.reason}{owner}"


def review_of(ledger: Ledger, view: ActionView) -> Review | None:
    """The approval of the rollback plan a compensation belongs to, from the lane of the
    workflow whose actions it undoes."""
    match = ROLLBACK_BATCH.match(view.batch)
    linked = view.compensates or view.replays
    if match is None or not linked:
        return None
    found = ledger.index.find_fingerprints(list(linked))
    workflows = {
        ledger._action(where.entity_id, where.version).workflow for where in found.values()
    }
    for workflow in sorted(w for w in workflows if w is not None):
        approval = {a.plan: a for a in lane(ledger, workflow).approvals}.get(match["plan"])
        if approval is not None:
            return Review(
                "approved",
                approval.approver,
                approval.at,
                f"{match[1]} plan {approval.plan} of workflow {workflow!r}, planned by "
                f"{approval.planner} (seal {approval.seal})",
            )
    return None
