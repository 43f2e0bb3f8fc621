"""What a rollback must know about references between records: where a re-created parent
lives now, and which deletions the system may carry over to children.

A system that assigns its own keys gives a re-created parent a new key (contact 2 comes back as
4). Its children, re-created or restored by the same rollback (or any later one), must point at
the new key, or they reference a record that is gone; the ledger's `move` actions say where
each parent went. Deleting a parent, on the other hand, may delete the records that reference
it, where the system cascades deletes (a foreign key ``ON DELETE CASCADE``, json-server's
dependents), and the rollback cannot see those records: the plan says so before it is applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.application import Ledger
from ledger.domain import Address
from ledger.errors import NotFound
from ledger.ports import Adapter, Relation


@dataclass(frozen=True)
class Caution:
    """Something to check before applying a plan, about one record."""

    entity: str
    reason: str


def cascade_cautions(
    deleted: Sequence[str],
    adapters: Mapping[str, Adapter],
    collections: Mapping[str, Sequence[str]],
) -> list[Caution]:
    """A caution for each deleted record whose collection other collections reference
    (``collections``: every collection of each system, where relations are declared)."""
    if not deleted:
        return []
    children: dict[tuple[str, str], list[str]] = {}
    for system, names in collections.items():
        adapter = adapters.get(system)
        if adapter is None:
            continue
        for name in names:
            for relation in adapter.relations(name):
                children.setdefault((system, relation.parent), []).append(
                    f"{name}.{relation.field}"
                )
    cautions = []
    for entity in deleted:
        address = Address.parse(entity)
        referencing = children.get((address.system, address.collection))
        if referencing:
            cautions.append(
                Caution(
                    entity,
                    f"deleting it may also delete the records that reference it "
                    f"({', '.join(sorted(referencing))}) where {address.system} cascades "
                    "deletes, and this rollback would not see them go; check for such "
                    "records before applying",
                )
            )
    return cautions


class Moves:
    """Where records of key-assigning collections live now: learned from this rollback's own
    re-creations as they land, else read from the ledger (a record's `move`, followed)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.known: dict[str, str] = {}

    def landed(self, old: str, new: str) -> None:
        self.known[old] = new

    def where(self, address: str) -> str:
        if address not in self.known:
            try:
                self.known[address] = self.ledger.state(Address.parse(address)).entity
            except NotFound:
                self.known[address] = address
        return self.known[address]


def follow_parents(
    address: Address,
    relations: Sequence[Relation],
    values: dict[str, Any],
    current: Mapping[str, Any],
    assigns_keys: Mapping[str, bool],
    moves: Moves,
) -> dict[str, Any]:
    """The values to write so that each parent field names where its parent lives now: the
    field's planned value when written, else its current one (``current``), replaced by the
    parent's new key where the parent moved (``{}`` when none did)."""
    followed: dict[str, Any] = {}
    for relation in relations:
        if not assigns_keys.get(relation.parent):
            continue  # only systems that choose keys move records
        value = values[relation.field] if relation.field in values else current.get(relation.field)
        if value is None or isinstance(value, (dict, list)):
            continue
        parent = f"{address.system}/{relation.parent}/{value}"
        now = moves.where(parent)
        if now != parent:
            followed[relation.field] = _like(value, Address.parse(now).key)
    return followed


def _like(old: Any, key: str) -> Any:
    """The new key in the old value's type (an integer id stays an integer)."""
    if isinstance(old, int) and not isinstance(old, bool):
        try:
            return int(key)
        except ValueError:
            return key
    return key
