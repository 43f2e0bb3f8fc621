"""The ledger's read side: any record or collection at any point, histories and differences.

A point (a time, effective time, checkpoint, position or version) becomes a cutoff in the
action index (`ledger.store.Cutoff`); a record is then read from the repository up to a
version, and a collection streams page by page in key order, folded as its rows pass.
A mixin of `Ledger`, building only on `AggregateStore`.
"""

from __future__ import annotations

import itertools
from collections.abc import Container, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from ledger.aggregates import AggregateStore, action_view
from ledger.domain import MOVE, Address, Entity, fold
from ledger.errors import InvalidChange, NotFound
from ledger.keys import merge_by_key
from ledger.points import Point
from ledger.store import CollectionAction, Cutoff, CutoffKind, from_micros, to_micros
from ledger.store.library_seams import fields_decoder
from ledger.values import ABSENT, same
from ledger.views import ActionView, EntityDiff, EntityState

PAGE_SIZE = 1000


class Queries(AggregateStore):
    """Reads the ledger at any point; writes nothing."""

    def cutoff(self, point: Point | None) -> Cutoff | None:
        """What a point means in the index (a version is per entity, so it has no cutoff)."""
        if point is None or point.kind == "version":
            return None
        if point.kind == "checkpoint":
            return Cutoff("position", self._checkpoint(cast(str, point.value)).position)
        if point.kind == "position":
            return Cutoff("position", cast(int, point.value))
        kind: CutoffKind = "recorded" if point.kind == "time" else "effective"
        return Cutoff(kind, to_micros(cast(datetime, point.value)))

    def history(self, address: Address, *, follow: bool = True) -> list[ActionView]:
        """Every action on a record, oldest first; after a move to a key the system chose,
        the actions at the new key follow (unless ``follow`` is false)."""
        positions = self.index.positions_of(address.entity_id)
        if not positions:
            raise NotFound(f"{address} has no recorded actions")
        actions = [
            action_view(cast(Entity.Action, event), positions[event.originator_version][0])
            for event in self.events.get(address.entity_id)
        ]
        moved_to = actions[-1].moved_to if actions[-1].operation == MOVE else None
        if follow and moved_to is not None:
            actions += self.history(Address.parse(moved_to))
        return actions

    def state(
        self, address: Address, at: Point | None = None, *, follow: bool = True
    ) -> EntityState:
        """A record as it was at a point (now, if no point is given). A record that had moved
        to a key the system chose by then is shown at that key (``moved_from`` says so),
        unless ``follow`` is false or the point is a version (versions are per address)."""
        entity_id = address.entity_id
        cutoff = self.cutoff(at)
        found: tuple[int, int] | None = None
        if at is not None and at.kind == "version":
            # One index seek: counting a long history's versions cost more than reading it.
            version = cast(int, at.value)
            found = self.index.find_position(entity_id, version) if version >= 1 else None
            if found is None:
                highest = self.index.versions_until(entity_id, None)[0]
                if highest == 0:
                    raise NotFound(f"{address} has no recorded actions")
                raise NotFound(f"{address} has versions 1 to {highest}, not {version}")
            highest = count = version
        else:
            highest, count = self.index.versions_until(entity_id, cutoff)
        if highest == 0:
            if cutoff is None or self.index.versions_until(entity_id, None)[0] == 0:
                raise NotFound(f"{address} has no recorded actions")
            return EntityState(str(address), False, {}, 0)
        effective = cutoff is not None and cutoff.kind == "effective"
        versions = []
        if cutoff is not None and effective:
            versions = self.index.versions_within(entity_id, cutoff)
        if versions == list(range(1, highest + 1)) or (not effective and count == highest):
            entity = cast(Entity, self.repository.get(entity_id, version=highest))
            fields, exists, moved_to = entity.fields, entity.exists, entity.moved_to
        else:
            # An effective-time cutoff can skip versions, or take them in another order (a
            # backdated action recorded late): fold just those actions, in that order.
            fields, exists, moved_to = {}, False, None
            for event in self._events_at_versions(entity_id, versions):
                fields, exists = fold(fields, event.operation, event.before, event.after)
                moved_to = event.moved_to if event.operation == MOVE else None
        if follow and moved_to is not None and (at is None or at.kind != "version"):
            followed = self.state(Address.parse(moved_to), at)
            return replace(followed, moved_from=(str(address), *followed.moved_from))
        position, recorded = found or self.index.position_of(entity_id, highest)
        return EntityState(
            str(address), exists, fields, highest, position, from_micros(recorded), moved_to
        )

    def _events_at_versions(self, entity_id: UUID, versions: list[int]) -> list[Entity.Action]:
        """These versions' actions, in the order given."""
        events = {
            event.originator_version: cast(Entity.Action, event)
            for event in self.events.get(entity_id)
        }
        return [events[version] for version in versions]

    def collection(
        self, system: str, collection: str, at: Point | None = None, *, deleted: bool = False
    ) -> Iterator[EntityState]:
        """Every record of a collection at a point, in key order, streamed page by page."""
        if at is not None and at.kind == "version":
            raise InvalidChange("a collection has no version; use a time or a checkpoint")
        cutoff = self.cutoff(at) or Cutoff("position", self.recorder.max_notification_id() or 0)
        key: str | None = None
        fields: dict[str, Any] = {}
        exists = False
        last: tuple[int, int, int] = (0, 0, 0)
        for (
            row_key,
            version,
            position,
            recorded,
            operation,
            before,
            values,
        ) in self.collection_actions(system, collection, cutoff):
            if row_key != key:
                if key is not None and (exists or deleted):
                    yield self._collection_state(system, collection, key, exists, fields, last)
                key, fields, exists, last = row_key, {}, False, (0, 0, 0)
            fields, exists = fold(fields, operation, before, values)
            last = max(last, (version, position, recorded))
        if key is not None and (exists or deleted):
            yield self._collection_state(system, collection, key, exists, fields, last)

    def collection_actions(
        self, system: str, collection: str, cutoff: Cutoff
    ) -> Iterator[CollectionAction]:
        """What folding a collection needs of every action within the cutoff, key by key,
        page by page, each key's actions in the order they fold: by version, or for an
        effective-time cutoff by the time each took effect (ties in recorded order)."""
        rows = self._collection_actions(system, collection, cutoff)
        if cutoff.kind == "effective":
            rows = _in_effective_order(rows)
        return map(CollectionAction._make, rows)

    def _collection_actions(
        self, system: str, collection: str, cutoff: Cutoff
    ) -> Iterator[tuple[Any, ...]]:
        """`collection_actions` in (key, version) order; for an effective-time cutoff each row
        also carries when the action took effect and when it was recorded."""
        mapper = self.mapper
        # Read just those fields of the stored state, each decoded as the transcoder decodes
        # it, unless a cipher or compressor is configured (then the library's mapper reads
        # the whole event).
        decode = fields_decoder(mapper)
        effective = cutoff.kind == "effective"
        names: tuple[str, ...] = ("operation", "before", "after")
        if effective:
            names += ("effective_at", "timestamp")
        after: tuple[str, int] | None = None
        while True:
            page: list[tuple[Any, ...]]
            if decode is not None:
                page = self.index.collection_states(system, collection, cutoff, after, PAGE_SIZE)
            else:
                rows = self.index.collection_page(system, collection, cutoff, after, PAGE_SIZE)
                page = [(row.key, row.version, row.position, row.recorded_at, row) for row in rows]
            for row_key, version, position, recorded, state in page:
                if decode is not None:
                    fields = decode(state, names)
                else:
                    event = cast(
                        Entity.Action,
                        mapper.to_domain_event(
                            StoredEvent(state.entity_id, version, state.topic, state.state)
                        ),
                    )
                    fields = (event.operation, event.before, event.after)
                    if effective:
                        fields += (event.effective_at, event.timestamp)
                yield (row_key, version, position, recorded, *fields)
            if len(page) < PAGE_SIZE:
                return
            after = (page[-1][0], page[-1][1])

    @staticmethod
    def _collection_state(
        system: str,
        collection: str,
        key: str,
        exists: bool,
        fields: dict[str, Any],
        last: tuple[int, int, int],
    ) -> EntityState:
        version, position, recorded = last
        return EntityState(
            f"{system}/{collection}/{key}",
            exists,
            fields,
            version,
            position,
            from_micros(recorded),
        )

    def changed_since(
        self,
        position: int,
        *,
        excluding: Container[str] = (),
        system: str | None = None,
        collection: str | None = None,
    ) -> set[str]:
        """Records (``system/collection/key``) with an action recorded after ``position``
        other than those whose fingerprints are in ``excluding``: what a plan made at that
        position must not write over, since the ledger learned something newer about it."""
        with self.index.actions_after(position, system=system, collection=collection) as rows:
            return {
                f"{row.system}/{row.collection}/{row.key}"
                for row in rows
                if row.fingerprint not in excluding
            }

    def diff(self, address: Address, a: Point | None, b: Point | None) -> EntityDiff | None:
        """How a record differs between two points; None when it is the same."""
        return _diff(self.state(address, a), self.state(address, b))

    def diff_collection(
        self, system: str, collection: str, a: Point | None, b: Point | None
    ) -> Iterator[EntityDiff]:
        """Every record that differs between two points, merged in key order (constant memory)."""
        left = self.collection(system, collection, a)
        right = self.collection(system, collection, b)
        absent = EntityState("", False, {}, 0)
        for _, x, y in merge_by_key(left, right, _entity_key, _entity_key):
            difference = _diff(absent if x is None else x, absent if y is None else y)
            if difference is not None:
                yield difference


def _in_effective_order(rows: Iterator[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """Rows of (key, version, position, recorded, operation, before, after, effective_at,
    timestamp)
    in key order, each key's actions reordered by when they took effect (the recorded time
    when none was given), ties in recorded order: a backdated correction recorded late folds
    where it belongs. One key's actions are held at a time."""
    for _, actions in itertools.groupby(rows, key=lambda row: row[0]):
        ordered = sorted(actions, key=lambda row: (row[7] or row[8], row[1]))
        for row in ordered:
            yield row[:7]


def _entity_key(state: EntityState) -> str:
    return state.entity


def _diff(a: EntityState, b: EntityState) -> EntityDiff | None:
    entity = a.entity or b.entity
    if not a.exists and not b.exists:
        return None
    names = sorted(set(a.fields) | set(b.fields))
    fields = {
        name: (a.fields.get(name, ABSENT), b.fields.get(name, ABSENT))
        for name in names
        if not same(a.fields.get(name, ABSENT), b.fields.get(name, ABSENT))
    }
    if not a.exists:
        return EntityDiff(entity, "added", fields)
    if not b.exists:
        return EntityDiff(entity, "removed", fields)
    return EntityDiff(entity, "changed", fields) if fields else None
