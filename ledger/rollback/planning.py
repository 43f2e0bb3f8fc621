"""Planning a rollback: the I/O around the pure planner, and nothing written.

Reads the scope's actions from the ledger's index, each record's history a page of records at a
time, and the targets' current records; `ledger.rollback.planner` decides each record, then
contracts, relation ordering and the abort policies shape the `RollbackPlan`.
"""

from __future__ import annotations

import weakref
from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast
from uuid import UUID

from ledger.application import Ledger
from ledger.domain import Address, Entity
from ledger.errors import InvalidChange
from ledger.plan_seal import digest
from ledger.points import Point
from ledger.ports import Adapter
from ledger.relations import cascade_cautions
from ledger.rollback.contracts import held_by_contract, protected_kept
from ledger.rollback.model import (
    DIRECTIONS,
    MISSING_PARENT,
    POLICIES,
    Conflict,
    Contract,
    FollowUp,
    RollbackScope,
    ScopedAction,
    choose,
)
from ledger.rollback.ordering import mark_new_key, order_by_relations
from ledger.rollback.plan import RollbackPlan, compensations_digest, spilled_compensations
from ledger.rollback.planner import plan_entity
from ledger.rollback.targets import read_targets

HISTORY_PAGE = 1000  # records whose histories are read at once while planning


def plan_rollback(
    ledger: Ledger,
    scope: RollbackScope,
    adapters: dict[str, Adapter],
    *,
    policy: str = "skip",
    contracts: dict[tuple[str, str], Contract] | None = None,
    direction: str = "undo",
    missing_parent: str = "skip",
    collections: Mapping[str, Sequence[str]] | None = None,
    planner: str | None = None,
) -> RollbackPlan:
    """Compute the rollback of a scope (``direction="redo"``: its replay); reads only.
    ``policy`` is one of `POLICIES` (checked here: it comes from the user). ``contracts`` are
    keyed by (system, collection). ``missing_parent`` says what happens to a record whose
    restored state references a parent record that is gone: ``skip`` it (listed as a conflict)
    or ``abort`` the whole plan. ``collections`` names every collection of each system
    (default: those in the plan), so that deleting a record that others reference comes with a
    caution. ``planner`` (who plans) is sealed with the plan: a lane's two-person rule asks
    someone else to approve it.

    The scope is read a page of records at a time, newest first, and the compensations are
    kept on disk as they are made (`ledger.spill`): memory stays that of a page, whatever the
    scope's size (unless adapters declare relations, whose ordering needs them all)."""
    chosen = choose(policy, POLICIES, "policy", "policy")
    orphans_rule = choose(missing_parent, MISSING_PARENT, "missing-parent policy", "missing_parent")
    way = choose(direction, DIRECTIONS, "direction", "direction")
    if not scope.batches and scope.since is None:
        raise InvalidChange("a rollback scope needs batches or a --since point", field="scope")
    position = ledger.recorder.max_notification_id() or 0
    within = scope_filter(ledger, scope, position)
    compensations = spilled_compensations()
    conflicts: list[Conflict] = []
    done: list[str] = []
    followups: list[FollowUp] = []
    deleted: list[str] = []
    now = datetime.now(UTC)
    workflows: set[str] = set()
    reversed_workflows: set[str] = set()  # those of the records compensated: see `vouch`
    in_plan: dict[str, set[str]] = {}  # the collections of each system the scope touches
    cut = cuts(ledger, position)
    for page in scope_pages(ledger, within):
        scoped = InScope(ledger, within, page)
        for record, history, image in _with_images(ledger, page, cut, adapters):
            address, actions = record.address, record.actions
            in_plan.setdefault(address.system, set()).add(address.collection)
            # A fingerprint names one action: the record's own in the scope are its rows.
            workflows.update(scope_workflows(history, {a.fingerprint for a in actions}))
            entity = str(address)
            contract = (contracts or {}).get((address.system, address.collection), Contract())
            held = held_by_contract(entity, history, actions, contract, now)
            if held is not None:
                followups.append(held)
                continue
            planned = plan_entity(
                entity,
                history,
                actions,
                scoped,
                image,
                policy=chosen,
                direction=way,
                protected=contract.protected,
            )
            if planned.done:
                done.append(entity)
                continue
            kept = protected_kept(entity, history, actions, contract)
            if kept is not None:
                followups.append(kept)
            if planned.compensation is not None:
                compensations.append(mark_new_key(planned.compensation, adapters))
                if planned.compensation.operation == "delete":
                    deleted.append(entity)
                reversed_workflows |= scope_workflows(
                    history, set(planned.compensation.compensates)
                )
            if planned.conflict is not None:
                conflicts.append(planned.conflict)
    if not in_plan and scope.batches:
        known = {b.name for b in ledger.batches()}
        missing = [b for b in scope.batches if b not in known]
        if missing:
            raise InvalidChange(
                f"no batch named {missing[0]!r}; see `ledger batches`", field="batch"
            )
    compensations, orphans = order_by_relations(
        compensations, adapters, [(s, c) for s, names in in_plan.items() for c in names]
    )
    aborted = (chosen == "abort" and bool(conflicts)) or (orphans_rule == "abort" and bool(orphans))
    if aborted:
        compensations = spilled_compensations()
    # The id names what the plan does, not only where it was made: two plans made at the same
    # position against different target states are two rollbacks, never one batch.
    plan_id = digest(
        {
            "scope": asdict(scope),
            "policy": chosen,
            "position": position,
            "direction": way,
            "compensations": compensations_digest(compensations),
        }
    ).removeprefix("sha256:")[:12]
    conflicts += orphans
    if collections is None:
        collections = {system: sorted(names) for system, names in in_plan.items()}
    gone = {c.entity for c in orphans}
    cautions = cascade_cautions(
        [] if aborted else [e for e in deleted if e not in gone], adapters, collections
    )
    plan = RollbackPlan(
        id=plan_id,
        scope=scope,
        policy=chosen,
        position=position,
        compensations=compensations,
        conflicts=tuple(sorted(conflicts, key=lambda c: c.entity)),
        already_rolled_back=tuple(sorted(done)),
        aborted=aborted,
        followups=tuple(followups),
        direction=way,
        missing_parent=orphans_rule,
        cautions=tuple(cautions),
        planner=planner,
        workflows=tuple(sorted(workflows)),
    )
    if not orphans:  # an orphan's compensation was dropped: let the check read history
        vouch(plan, ledger, contracts, () if aborted else tuple(sorted(reversed_workflows)))
    return plan


_VOUCHED: dict[int, tuple[weakref.ref[RollbackPlan], weakref.ref[Ledger], Any, tuple[str, ...]]]
_VOUCHED = {}


def vouch(
    plan: RollbackPlan,
    ledger: Ledger,
    contracts: dict[tuple[str, str], Contract] | None,
    workflows: tuple[str, ...],
) -> None:
    """Remember that this plan object is the one `plan_rollback` just made from ``ledger``'s
    history with these ``contracts``, and the workflows its compensations reverse: applying it
    as returned need not read every history again to check it (`vouched`). A plan read from
    a file, or built otherwise (even with `dataclasses.replace`), is another object: checked."""
    key = id(plan)
    _VOUCHED[key] = (
        weakref.ref(plan, lambda _: _VOUCHED.pop(key, None)),
        weakref.ref(ledger),
        dict(contracts or {}),
        workflows,
    )


def vouched(
    plan: RollbackPlan, ledger: Ledger, contracts: dict[tuple[str, str], Contract] | None
) -> tuple[str, ...] | None:
    """The workflows a plan `vouch`ed for reverses, when this is that plan object, planned from
    this ledger with the same contracts (None: it must be checked)."""
    entry = _VOUCHED.get(id(plan))
    if entry is None or entry[0]() is not plan or entry[1]() is not ledger:
        return None
    return entry[3] if entry[2] == dict(contracts or {}) else None


def scope_workflows(history: Sequence[Entity.Action], fingerprints: Container[str]) -> set[str]:
    """The workflows of a record's actions among ``fingerprints``: whose lanes a plan of them
    answers to."""
    return {
        event.workflow
        for event in history
        if event.fingerprint in fingerprints and event.workflow is not None
    }


class ScopeRecord(NamedTuple):
    """One record of a scope: its id, its address, its actions in the scope (oldest first)."""

    entity_id: UUID
    address: Address
    actions: list[ScopedAction]


def scope_filter(ledger: Ledger, scope: RollbackScope, position: int) -> dict[str, Any]:
    """The scope as the index's filters, up to a log position."""
    return {
        "batches": scope.batches,
        "workflow": scope.workflow,
        "after": ledger.cutoff(Point.parse(scope.since)) if scope.since else None,
        "system": scope.system,
        "collection": scope.collection,
        "up_to": position,
    }


def scope_pages(ledger: Ledger, within: dict[str, Any]) -> Iterator[list[ScopeRecord]]:
    """The scope's records a page at a time, the record whose newest action in the scope is
    newest first (a rollback's order), read lazily from the index."""
    page: list[ScopeRecord] = []
    with ledger.index.actions_by_record(**within) as rows:
        for entity_id, version, row_position, fingerprint, system, collection, key in rows:
            if not page or page[-1].entity_id != entity_id:
                if len(page) == HISTORY_PAGE:
                    yield page
                    page = []
                page.append(ScopeRecord(entity_id, Address(system, collection, key), []))
            page[-1].actions.append(ScopedAction(version, row_position, fingerprint))
    if page:
        yield page


class InScope(Container[str]):
    """Whether a fingerprint names an action of the scope: those of a page of records are at
    hand; any other (a later rollback on a record names the actions it compensated, maybe
    under another key) is looked up in the index."""

    def __init__(self, ledger: Ledger, within: dict[str, Any], page: Sequence[ScopeRecord]):
        self.ledger = ledger
        self.within = within
        self.page = {action.fingerprint for record in page for action in record.actions}
        self.looked_up: dict[str, bool] = {}

    def __contains__(self, fingerprint: object) -> bool:
        if not isinstance(fingerprint, str):
            return False
        if fingerprint in self.page:
            return True
        if fingerprint not in self.looked_up:
            found = self.ledger.index.actions_matching(**self.within, fingerprints=(fingerprint,))
            self.looked_up[fingerprint] = bool(found)
        return self.looked_up[fingerprint]


def cuts(ledger: Ledger, position: int) -> dict[UUID, int]:
    """Records with actions after a log position: the last version each had at it."""
    cut: dict[UUID, int] = {}
    with ledger.index.actions_after(position) as rows:
        for entity_id, version, *_ in rows:
            cut[entity_id] = min(cut.get(entity_id, version), version - 1)
    return cut


def read_histories(
    ledger: Ledger, entity_ids: Sequence[UUID], cut: Mapping[UUID, int]
) -> list[tuple[UUID, list[Entity.Action]]]:
    """A page of records' actions up to a log position (``cut``: `cuts` at it), in one read
    (the event store would make one query per record)."""
    table = cast(Any, ledger.recorder).events_table_name
    stored = ledger.index.stored_events_of(table, entity_ids)
    found = []
    for entity_id in entity_ids:
        events = stored.pop(entity_id, ())
        if entity_id in cut:
            events = [e for e in events if e.originator_version <= cut[entity_id]]
        found.append(
            (entity_id, [cast(Entity.Action, ledger.mapper.to_domain_event(e)) for e in events])
        )
    return found


def _with_images(
    ledger: Ledger,
    page: list[ScopeRecord],
    cut: Mapping[UUID, int],
    adapters: dict[str, Adapter],
) -> Iterator[tuple[ScopeRecord, list[Entity.Action], Any]]:
    """Each record of a page with its history and its target record, read for the page at
    once."""
    found = read_histories(ledger, [record.entity_id for record in page], cut)
    images = read_targets(adapters, (record.address for record in page))
    for record, (_, history) in zip(page, found, strict=True):
        yield record, history, images[str(record.address)]
