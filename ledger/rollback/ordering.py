"""The order of a plan's compensations where adapters know relations between collections.

Parents are re-created before their children and children deleted before their parents; a
record whose restored state would reference a parent that is gone becomes a conflict (an
orphan). Everything relations do not decide keeps reverse log order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import replace

from ledger.domain import Address
from ledger.ports import Adapter, Relation
from ledger.rollback.model import Compensation, Conflict
from ledger.rollback.targets import read_targets
from ledger.spill import Spilled
from ledger.values import ABSENT

Relations = dict[tuple[str, str], tuple[Relation, ...]]  # (system, collection) -> its relations
# Per record: the parents it references after the compensation (field, parent), and the
# parents it references now and stops referencing.
References = dict[str, tuple[list[tuple[str, str]], list[str]]]


def mark_new_key(c: Compensation, adapters: dict[str, Adapter]) -> Compensation:
    """A re-create marked where the system assigns the keys of its collection."""
    if c.operation != "create":
        return c
    address = Address.parse(c.entity)
    new_key = adapters[address.system].assigns_keys(address.collection)
    return replace(c, new_key=True) if new_key else c


def order_by_relations(
    compensations: Spilled[Compensation],
    adapters: dict[str, Adapter],
    collections: Iterable[tuple[str, str]],
) -> tuple[Spilled[Compensation], list[Conflict]]:
    """Where adapters know relations between the plan's collections: drop (as conflicts) the
    records whose restored state would reference a parent that is gone, then put parents'
    re-creations before their children and children's deletions before their parents,
    keeping reverse log order wherever relations do not decide. ``collections`` are the
    (system, collection) pairs of the plan's records. Without relations the compensations
    are returned as they are (never read into memory); with them, they are."""
    relations: Relations = {
        (system, name): adapters[system].relations(name) for system, name in collections
    }
    if not any(relations.values()):
        return compensations, []
    marked = list(compensations)
    references = {c.entity: _references(c, relations) for c in marked}
    orphans = _orphans(marked, references, adapters)
    kept = [c for c in marked if c.entity not in orphans]
    ordered = _topological(kept, references)
    return Spilled.of(ordered, compensations.encode, compensations.decode), list(orphans.values())


def _references(c: Compensation, relations: Relations) -> tuple[list[tuple[str, str]], list[str]]:
    """The parents the record will reference after the compensation (with the field), and
    the parents it references now and stops referencing (by deletion or by the update)."""
    address = Address.parse(c.entity)
    after: list[tuple[str, str]] = []
    before: list[str] = []
    for relation in relations[(address.system, address.collection)]:
        parent = f"{address.system}/{relation.parent}/"
        if c.operation != "delete" and c.values.get(relation.field) is not None:
            after.append((relation.field, parent + str(c.values[relation.field])))
        changes = c.operation == "delete" or relation.field in (*c.values, *c.unset)
        old = c.expected.get(relation.field, ABSENT)
        if changes and old is not ABSENT and old is not None:
            before.append(parent + str(old))
    return after, before


def _orphans(
    compensations: list[Compensation], references: References, adapters: dict[str, Adapter]
) -> dict[str, Conflict]:
    """Records whose restored state references a parent that neither exists in its target
    (and survives the plan) nor is re-created by it; found again until none is left, since
    skipping a parent's re-creation orphans its children."""
    by_entity = {c.entity: c for c in compensations}
    wanted = {
        parent
        for after, _ in references.values()
        for _, parent in after
        if parent not in by_entity or by_entity[parent].operation == "update"
    }
    present = {
        name
        for name, record in read_targets(adapters, map(Address.parse, wanted)).items()
        if record is not None
    }
    orphans: dict[str, Conflict] = {}

    def alive(parent: str) -> bool:
        planned = by_entity.get(parent)
        if planned is None or planned.operation == "update":
            return parent in present  # the plan leaves it where it is
        return planned.operation == "create" and parent not in orphans  # unless skipped

    while True:
        found = False
        for c in compensations:
            if c.entity in orphans:
                continue
            for field_name, parent in references[c.entity][0]:
                if not alive(parent):
                    orphans[c.entity] = Conflict(
                        c.entity,
                        "missing parent",
                        (field_name,),
                        ({"field": field_name, "value": parent, "by": "parent record is gone"},),
                    )
                    found = True
                    break
        if not found:
            return orphans


def _topological(compensations: list[Compensation], references: References) -> list[Compensation]:
    """Parents re-created before children, children deleted before parents; otherwise the
    given (reverse log) order. A cycle of references keeps the given order for its records."""
    position = {c.entity: index for index, c in enumerate(compensations)}
    successors: list[list[int]] = [[] for _ in compensations]
    waiting = [0] * len(compensations)

    def edge(first: int, then: int) -> None:
        successors[first].append(then)
        waiting[then] += 1

    for index, c in enumerate(compensations):
        after, before = references[c.entity]
        for _, parent in after:
            other = position.get(parent)
            if other is not None and compensations[other].operation == "create":
                edge(other, index)
        for parent in before:
            other = position.get(parent)
            if other is not None and compensations[other].operation == "delete":
                edge(index, other)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for then in successors[index]:
            waiting[then] -= 1
            if waiting[then] == 0:
                heapq.heappush(ready, then)
    placed = set(order)
    order += [index for index in range(len(compensations)) if index not in placed]
    return [compensations[index] for index in order]
