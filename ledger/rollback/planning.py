"""Planning a rollback: the I/O around the pure planner, and nothing written.

Reads the scope's actions from the ledger's index, each record's history a page of records at a
time, and the targets' current records; `ledger.rollback.planner` decides each record, then
contracts, relation ordering and the abort policies shape the `RollbackPlan`.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, cast
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
    Compensation,
    Conflict,
    Contract,
    FollowUp,
    RollbackScope,
    ScopedAction,
    choose,
)
from ledger.rollback.ordering import order_by_relations
from ledger.rollback.plan import RollbackPlan
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
    someone else to approve it."""
    chosen = choose(policy, POLICIES, "policy", "policy")
    orphans_rule = choose(missing_parent, MISSING_PARENT, "missing-parent policy", "missing_parent")
    way = choose(direction, DIRECTIONS, "direction", "direction")
    if not scope.batches and scope.since is None:
        raise InvalidChange("a rollback scope needs batches or a --since point", field="scope")
    position = ledger.recorder.max_notification_id() or 0
    by_entity, addresses, scoped = scope_actions(ledger, scope, position)
    if not by_entity and scope.batches:
        known = {b.name for b in ledger.batches()}
        missing = [b for b in scope.batches if b not in known]
        if missing:
            raise InvalidChange(
                f"no batch named {missing[0]!r}; see `ledger batches`", field="batch"
            )
    compensations: list[Compensation] = []
    conflicts: list[Conflict] = []
    done: list[str] = []
    followups: list[FollowUp] = []
    now = datetime.now(UTC)
    workflows: set[str] = set()
    reversed_workflows: set[str] = set()  # those of the records compensated: see `vouch`
    for entity_id, history, image in _with_images(
        history_pages(ledger, list(by_entity), position), addresses, adapters
    ):
        workflows.update(scope_workflows(history, scoped))
        actions = by_entity[entity_id]
        address = addresses[entity_id]
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
            compensations.append(planned.compensation)
            reversed_workflows |= scope_workflows(history, set(planned.compensation.compensates))
        if planned.conflict is not None:
            conflicts.append(planned.conflict)
    compensations.sort(key=lambda c: c.position, reverse=True)
    compensations, orphans = order_by_relations(compensations, adapters)
    aborted = (chosen == "abort" and bool(conflicts)) or (orphans_rule == "abort" and bool(orphans))
    if aborted:
        compensations = []
    # The id names what the plan does, not only where it was made: two plans made at the same
    # position against different target states are two rollbacks, never one batch.
    plan_id = digest(
        {
            "scope": asdict(scope),
            "policy": chosen,
            "position": position,
            "direction": way,
            "compensations": [
                (c.entity, c.operation, c.values, c.unset, c.expected, c.compensates, c.position)
                for c in compensations
            ],
        }
    ).removeprefix("sha256:")[:12]
    conflicts += orphans
    if collections is None:
        in_plan: dict[str, set[str]] = {}
        for address in addresses.values():
            in_plan.setdefault(address.system, set()).add(address.collection)
        collections = {system: sorted(names) for system, names in in_plan.items()}
    deleted = [c.entity for c in compensations if c.operation == "delete"]
    cautions = cascade_cautions(deleted, adapters, collections)
    plan = RollbackPlan(
        id=plan_id,
        scope=scope,
        policy=chosen,
        position=position,
        compensations=tuple(compensations),
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


def scope_workflows(history: Sequence[Entity.Action], fingerprints: set[str]) -> set[str]:
    """The workflows of a record's actions among ``fingerprints``: whose lanes a plan of them
    answers to."""
    return {
        event.workflow
        for event in history
        if event.fingerprint in fingerprints and event.workflow is not None
    }


def scope_actions(
    ledger: Ledger, scope: RollbackScope, position: int
) -> tuple[dict[UUID, list[ScopedAction]], dict[UUID, Address], set[str]]:
    """The scope's actions up to a log position, per record, oldest first; each record's
    address; every fingerprint in scope."""
    rows = ledger.index.actions_matching(
        batches=scope.batches,
        workflow=scope.workflow,
        after=ledger.cutoff(Point.parse(scope.since)) if scope.since else None,
        system=scope.system,
        collection=scope.collection,
    )
    by_entity: dict[UUID, list[ScopedAction]] = {}
    addresses: dict[UUID, Address] = {}
    scoped: set[str] = set()
    for entity_id, version, row_position, fingerprint, system, collection, key in rows:
        if row_position <= position:
            by_entity.setdefault(entity_id, []).append(
                ScopedAction(version, row_position, fingerprint)
            )
            addresses[entity_id] = Address(system, collection, key)
            scoped.add(fingerprint)
    return by_entity, addresses, scoped


def histories(
    ledger: Ledger, entity_ids: list[UUID], position: int
) -> Iterator[tuple[UUID, list[Entity.Action]]]:
    """Each record's actions up to a log position (`history_pages`, one record at a time)."""
    for page in history_pages(ledger, entity_ids, position):
        yield from page


def history_pages(
    ledger: Ledger, entity_ids: list[UUID], position: int
) -> Iterator[list[tuple[UUID, list[Entity.Action]]]]:
    """Records' actions up to a log position, read a page of records at a time (the event
    store would make one query per record: a 100,000-record rollback spent a third of its
    planning there)."""
    table = cast(Any, ledger.recorder).events_table_name
    cut: dict[UUID, int] = {}  # records with actions after the position: the last version before
    for entity_id, version, *_ in ledger.index.actions_matching(after_position=position):
        cut[entity_id] = min(cut.get(entity_id, version), version - 1)
    for start in range(0, len(entity_ids), HISTORY_PAGE):
        page = entity_ids[start : start + HISTORY_PAGE]
        stored = ledger.index.stored_events_of(table, page)
        found = []
        for entity_id in page:
            events = stored.pop(entity_id, ())
            if entity_id in cut:
                events = [e for e in events if e.originator_version <= cut[entity_id]]
            found.append(
                (
                    entity_id,
                    [cast(Entity.Action, ledger.mapper.to_domain_event(event)) for event in events],
                )
            )
        yield found


def _with_images(
    pages: Iterator[list[tuple[UUID, list[Entity.Action]]]],
    addresses: dict[UUID, Address],
    adapters: dict[str, Adapter],
) -> Iterator[tuple[UUID, list[Entity.Action], Any]]:
    """Each record's history with its target record, read a page at a time (not every record
    of the scope at once: memory stays that of a page)."""
    for page in pages:
        images = read_targets(adapters, (addresses[entity_id] for entity_id, _ in page))
        for entity_id, history in page:
            yield entity_id, history, images[str(addresses[entity_id])]
