"""Receipts: everything needed to explain and repair one recorded action, from its events.

A receipt is derived, not stored: the action's event, the intent a run declared before its
write (`Intent`), the record's later history, the lane's events, the batch's run record and
the lane row are read back and each check is recomputed from those recorded facts
(docs/receipts.md says which fact each part comes from). Nothing is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, cast

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate

from ledger.application import Ledger
from ledger.changes import Change
from ledger.domain import TRACK, Address, Entity, Intent, intent_id
from ledger.encoding import encode_value
from ledger.errors import InvalidChange, NotFound
from ledger.lane_control import lane
from ledger.lanes import Lane, LaneConfig, lane_id
from ledger.rollback.contracts import held_by_contract, protected_kept
from ledger.rollback.model import Contract, ScopedAction
from ledger.rollback.planner import later_changes, read_history, state_at
from ledger.run_records import RunRecord, run_record_id
from ledger.settlement import compare_and_set
from ledger.store import Cutoff, from_micros
from ledger.triggers import RunStatistics, Triggers, check_run
from ledger.values import ABSENT, same
from ledger.views import ActionView

__all__ = [
    "ActionReceipt",
    "Check",
    "Correction",
    "CorrectionPath",
    "LaterEdit",
    "ProposedChange",
    "Review",
    "SourceRecord",
    "find_action",
    "receipt",
]

CheckStatus = Literal["passed", "failed", "unknown"]
Standing = Literal["standing", "compensated", "replayed"]
_AT_VERSION = re.compile(r"^(?P<address>.+/.+/.+)@(?P<version>[0-9]+)$")
_ROLLBACK_BATCH = re.compile(r"^(rollback|replay)-(?P<plan>[0-9a-f]+)$")
_SHOWN = 10  # candidates named when a prefix is ambiguous


@dataclass(frozen=True)
class SourceRecord:
    """A record the action was drafted from; when the ledger knows it, the version it held
    when the action was recorded and when that version was recorded."""

    record: str
    version: int | None = None
    recorded_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "record": self.record,
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
        }


def find_action(ledger: Ledger, action: str) -> ActionView:
    """The action a user names: its fingerprint, a unique prefix of it (with or without the
    ``sha256:``), or ``system/collection/key@VERSION``."""
    text = action.strip()
    if not text:
        raise InvalidChange("name an action: a fingerprint (or its prefix) or ENTITY@VERSION")
    exact = ledger.index.find_fingerprints([text])
    if text in exact:
        return ledger._action(exact[text].entity_id, exact[text].version)
    at_version = _AT_VERSION.match(text)
    if at_version is not None:
        address = Address.parse(at_version["address"])
        version = int(at_version["version"])
        highest = ledger.index.versions_until(address.entity_id, None)[0]
        if highest == 0:
            raise NotFound(f"{address} has no recorded actions")
        if not 1 <= version <= highest:
            raise NotFound(f"{address} has versions 1 to {highest}, not {version}")
        return ledger._action(address.entity_id, version)
    # No index over fingerprint prefixes: one pass over the index's actions.
    prefixes = (text, f"sha256:{text}")
    found = [row for row in ledger.index.actions_matching() if row.fingerprint.startswith(prefixes)]
    if not found:
        raise NotFound(
            f"no action has fingerprint {text!r} or one starting with it; see "
            "`ledger history ENTITY` for fingerprints, or name it as ENTITY@VERSION"
        )
    if len(found) > 1:
        named = ", ".join(
            f"{row.fingerprint} ({row.system}/{row.collection}/{row.key}@{row.version})"
            for row in found[:_SHOWN]
        )
        more = f" and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
        raise InvalidChange(
            f"{text!r} starts {len(found)} fingerprints: {named}{more}; give more of it",
            field="action",
        )
    (row,) = found
    return ledger._action(row.entity_id, row.version)


def receipt(
    ledger: Ledger,
    action: str,
    *,
    lanes: Mapping[str, LaneConfig] | None = None,
    contracts: Mapping[tuple[str, str], Contract] | None = None,
) -> ActionReceipt:
    """The receipt of one action (named as `find_action` reads it). ``lanes`` are the lane
    rows (`load_lanes`): the workflow's row picks the fields shown first and the guards
    checked; ``contracts`` the rollback contracts, for the correction path."""
    view = find_action(ledger, action)
    address = Address.parse(view.entity)
    history = [cast(Entity.Action, event) for event in ledger.events.get(address.entity_id)]
    config = (lanes or {}).get(view.workflow or "")
    proposed = _proposed(ledger, view)
    checks = [
        *_recorded_checks(history, view, proposed),
        *_lane_checks(ledger, view, proposed, config),
    ]
    sources = tuple(_source(ledger, name, view) for name in view.sources)
    if config is not None:
        checks += _guard_checks(view, config.triggers, sources)
    contract = (contracts or {}).get((address.system, address.collection))
    if contract is not None:
        checks.append(_contract_check(view, history, contract))
    return ActionReceipt(
        action=view,
        highlight=_highlight(history, view, () if config is None else config.receipt_fields),
        sources=sources,
        proposed=proposed,
        checks=tuple(checks),
        review=_review(ledger, view),
        correction=_correction(view, history, contract),
        lane_configured=config is not None,
    )


# What was proposed, and where the action came from ----------------------------------------


def _highlight(
    history: Sequence[Entity.Action], view: ActionView, names: Sequence[str]
) -> dict[str, tuple[Any, Any]]:
    before, _ = state_at(history, view.version - 1)
    after, _ = state_at(history, view.version)
    return {name: (before.get(name, ABSENT), after.get(name, ABSENT)) for name in names}


def _proposed(ledger: Ledger, view: ActionView) -> ProposedChange | None:
    """The intent declared before the write (applied actions only), read from its events."""
    try:
        intent = cast(Intent, ledger.repository.get(intent_id(view.fingerprint)))
    except AggregateNotFoundError:
        return None
    events = list(ledger.events.get(intent.id))
    declared = [e for e in events if isinstance(e, Intent.Declared | Intent.Redeclared)]
    settled = [e for e in events if isinstance(e, Intent.Settled)]
    write = intent.write
    change = Change(
        Address.parse(intent.address),
        write["operation"],
        values=write["values"],
        unset=tuple(write["unset"]),
        expected=write["expected"],
        image=write["image"],
    )
    return ProposedChange(
        operation=write["operation"],
        values=dict(write["values"]),
        unset=tuple(write["unset"]),
        expected=compare_and_set(change).expected,  # the one rule settlement writes with
        declared_at=declared[-1].timestamp,
        attempts=len(declared),
        outcome=intent.outcome,
        settled_at=settled[-1].timestamp if settled else None,
    )


def _source(ledger: Ledger, name: str, view: ActionView) -> SourceRecord:
    """A source as the ledger held it when the action was recorded, if it is a record the
    ledger knows; otherwise just its name (the event carries no source timestamps)."""
    try:
        address = Address.parse(name)
    except InvalidChange:
        return SourceRecord(name)
    cutoff = Cutoff("position", view.position or 0)
    version, _ = ledger.index.versions_until(address.entity_id, cutoff)
    if version == 0:
        return SourceRecord(name)
    _, recorded = ledger.index.position_of(address.entity_id, version)
    return SourceRecord(name, version, from_micros(recorded))


# Checks -----------------------------------------------------------------------------------


def _recorded_checks(
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


def _lane_checks(
    ledger: Ledger, view: ActionView, proposed: ProposedChange | None, config: LaneConfig | None
) -> list[Check]:
    """The lane gate as it stood when the write was let through (the intent's declaration;
    the recording, for an action recorded directly), and the run's stop triggers."""
    if view.workflow is None or _ROLLBACK_BATCH.match(view.batch):
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


def _guard_checks(
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
        dated = {s.record: s.recorded_at for s in sources if s.recorded_at is not None}
        if not dated:
            detail = "no source record the ledger knows: no timestamp to judge"
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
                    "the sources' recorded times; the lane row's source_age",
                )
            )
    return checks


def _contract_check(
    view: ActionView, history: Sequence[Entity.Action], contract: Contract
) -> Check:
    follow_up = _follow_up(view, history, contract)
    return Check(
        "rollback-contract",
        "failed" if follow_up else "passed",
        follow_up or "reversible by a write within the collection's rollback contract",
        "the collection's rollback contract",
    )


def _follow_up(
    view: ActionView, history: Sequence[Entity.Action], contract: Contract | None
) -> str | None:
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


def _review(ledger: Ledger, view: ActionView) -> Review | None:
    """The approval of the rollback plan a compensation belongs to, from the lane of the
    workflow whose actions it undoes."""
    match = _ROLLBACK_BATCH.match(view.batch)
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


# The correction path -----------------------------------------------------------------------


def _correction(
    view: ActionView, history: Sequence[Entity.Action], contract: Contract | None
) -> CorrectionPath:
    """Whether the action was compensated or replayed (by which actions), and the edits by
    others since that a rollback of it would meet, judged as the rollback planner judges."""
    corrections: list[Correction] = []
    status: Standing = "standing"
    for event in history[view.version :]:
        kind: Literal["compensated", "replayed"] | None = None
        if view.fingerprint in event.compensates:
            kind = "compensated"
        elif view.fingerprint in event.replays:
            kind = "replayed"
        if kind is not None:
            status = kind
            corrections.append(
                Correction(
                    kind,
                    event.fingerprint,
                    event.address,
                    event.originator_version,
                    event.batch,
                    event.actor,
                    event.timestamp,
                )
            )
    later: list[LaterEdit] = []
    in_the_way: set[str] = set()
    if view.operation != TRACK:
        scoped = [ScopedAction(view.version, view.position or 0, view.fingerprint)]
        record = read_history(history, scoped, {view.fingerprint}, "undo")
        for event in record.later:
            fields, _ = later_changes(replace(record, later=[event]), history, True)
            if fields:
                later.append(
                    LaterEdit(
                        event.originator_version,
                        event.operation,
                        event.batch,
                        event.actor,
                        event.timestamp,
                        tuple(sorted(fields)),
                    )
                )
        in_the_way, _ = later_changes(record, history, False)
    return CorrectionPath(
        compensation=view.compensation,
        status=status,
        corrections=tuple(corrections),
        current_version=len(history),
        later_edits=tuple(later),
        fields_in_the_way=tuple(sorted(in_the_way)),
        follow_up=_follow_up(view, history, contract),
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
