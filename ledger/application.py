"""The ledger application: records actions exactly once and answers from any point in time.

Built on the eventsourcing library's Application: its repository, snapshots, notification
log and recorders do the storing; this class decides what is recorded and how the
action index (see `ledger.store`) is used to answer by time, checkpoint and collection.
"""

from __future__ import annotations

import gc
import itertools
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Recording, StoredEvent, Transcoder
from eventsourcing.utils import Environment, EnvType

from ledger.changes import Change, observed_drift, resolve, reused_fingerprint
from ledger.domain import (
    MOVE,
    Address,
    Batch,
    Checkpoint,
    Entity,
    batch_id,
    checkpoint_id,
    fold,
)
from ledger.errors import (
    BatchClosed,
    CheckpointExists,
    ConcurrencyConflict,
    InvalidChange,
    NotFound,
    UnknownCheckpoint,
)
from ledger.keys import merge_by_key
from ledger.points import Point, looks_like_time
from ledger.store import Cutoff, IndexedRecorder, IndexEntry, from_micros, to_micros
from ledger.transcoder import OrjsonTranscoder
from ledger.values import ABSENT, same
from ledger.views import Action, BatchView, CheckpointView, EntityDiff, EntityState, Receipt

MAX_ATTEMPTS = 25
PAGE_SIZE = 1000


class Ledger(Application[UUID]):
    """Records workflow actions and shows any record or collection at any point."""

    name = "Ledger"
    snapshotting_intervals: ClassVar = {Entity: 100}

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """The settings given (`ledger.bootstrap.store_env`) and nothing else: the library
        would add ``os.environ``, where a stray ``LEDGER_SQLITE_DBNAME`` redirects the store
        and ``POSTGRES_ENABLE_DB_FUNCTIONS`` stores events without their index rows."""
        settings = dict(type(self).env)
        if type(self).is_snapshotting_enabled or type(self).snapshotting_intervals:
            settings["IS_SNAPSHOTTING_ENABLED"] = "y"
        settings.update(env or {})
        return Environment(name, settings)

    def construct_transcoder(self) -> Transcoder:
        return OrjsonTranscoder()

    @property
    def index(self) -> IndexedRecorder:
        return cast(IndexedRecorder, self.recorder)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """`Application.save`, by its own steps. The library tells events from aggregates by
        checking every object against two runtime protocols (about 12 µs an object on Python
        3.11: a tenth of a large batch or rollback); when every object is an `Aggregate`,
        their events are collected directly."""
        if not all(obj is None or isinstance(obj, Aggregate) for obj in objs):
            return super().save(*objs, **kwargs)
        processing: ProcessingEvent[UUID] = ProcessingEvent()
        for obj in objs:
            if obj is not None:
                processing.events.extend(obj.collect_events())
                processing.aggregates[obj.id] = obj
        processing.saved_kwargs.update(kwargs)
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)
        self.notify(processing.events)  # deprecated in the library, still called by save()
        return recordings

    # Recording -------------------------------------------------------------------------

    def record(self, change: Change, **defaults: Any) -> Receipt:
        """Record one change; the same fingerprint recorded again returns the first receipt.
        Without a batch, the change gets one of its own, named so that a retry records
        nothing twice."""
        change = change.with_defaults(**defaults)
        if change.batch is None:
            change = change.evolve(batch=self._batch_of_its_own(change))
        return self.record_all([change])[0]

    def _batch_of_its_own(self, change: Change) -> str:
        """The batch of a change recorded without one: named for the change and the version of the
        record it applies to, so the same command run again after it succeeded (a retry) finds
        the first run's action, the record's latest, and records nothing twice."""

        def named(based_on: int) -> str:
            digest = change.content_hash(
                based_on=based_on,
                workflow=change.workflow,
                workflow_version=change.workflow_version,
                actor=change.actor,
                trigger=change.trigger,
                sources=list(change.sources),
            )
            return "record-" + digest.removeprefix("sha256:")[:16]

        version = self.index.versions_until(change.address.entity_id, None)[0]
        if version:
            latest = named(version - 1)
            if self.index.find_fingerprints([change.fingerprint_in(latest, version - 1)]):
                return latest
        return named(version)

    def record_all(
        self,
        changes: Sequence[Change],
        *,
        line_numbers: Sequence[int] | None = None,
        close_batch: bool = False,
        on_progress: Callable[[int], None] | None = None,
        settle: Callable[[], tuple[list[Any], dict[str, Any]]] | None = None,
        **defaults: Any,
    ) -> list[Receipt]:
        """Record changes all or nothing, in one transaction, retrying against fresh state when
        another writer got there first. ``defaults`` fill each change's empty batch and
        workflow fields; without a batch, the changes get a new batch of their own.
        ``settle`` returns more aggregates and store arguments to save in the same
        transaction (built afresh for each attempt)."""
        defaults.setdefault("batch", None)
        if defaults["batch"] is None and any(change.batch is None for change in changes):
            defaults["batch"] = "batch-" + uuid.uuid4().hex[:12]
        # A large batch allocates several objects per action (events, their values, stored
        # events, receipts), all kept until it is saved and none in a reference cycle.
        # CPython's cyclic collector would walk all of them again each time the heap grows
        # by a quarter: about a sixth of the time of the batch, finding nothing to free.
        # It is paused while the batch is built and saved, and runs again afterwards.
        pause_gc = len(changes) >= 1000 and gc.isenabled()
        if pause_gc:
            gc.disable()
        try:
            changes = [change.with_defaults(**defaults) for change in changes]
            for attempt in range(MAX_ATTEMPTS):
                try:
                    return self._record_once(
                        changes, line_numbers, close_batch, on_progress, settle
                    )
                except IntegrityError:
                    time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
                    on_progress = None
        finally:
            if pause_gc:
                gc.enable()
        entities = sorted({str(change.address) for change in changes})[:3]
        raise ConcurrencyConflict(
            f"other writers kept changing {', '.join(entities)} while this was being recorded "
            f"({MAX_ATTEMPTS} attempts); nothing was recorded, try again"
        )

    def _record_once(
        self,
        changes: Sequence[Change],
        line_numbers: Sequence[int] | None,
        close_batch: bool,
        on_progress: Callable[[int], None] | None,
        settle: Callable[[], tuple[list[Any], dict[str, Any]]] | None = None,
    ) -> list[Receipt]:
        session = _Session(self, {})
        # Read the records first and the fingerprints after: an action another writer
        # committed before a record was read is then found as recorded (a duplicate),
        # never judged as newer state that contradicts the change being replayed.
        # The changes' batches are read in the same queries (each is otherwise read when
        # its first change is recorded: two more queries for every `record`).
        entity_ids = [c.address.entity_id for c in changes]
        names = dict.fromkeys(cast(str, change.batch) for change in changes)
        batches = {batch_id(name): name for name in names}
        loaded = self._load_entities([*entity_ids, *batches])
        session.entities.update((entity_id, loaded[entity_id]) for entity_id in entity_ids)
        for aggregate_id, name in batches.items():
            if isinstance(loaded[aggregate_id], Batch):
                session.batches[name] = loaded[aggregate_id]
        explicit = [change.fingerprint for change in changes if change.fingerprint]
        session.recorded = self.index.find_fingerprints(explicit) if explicit else {}
        results = []
        for number, change in enumerate(changes):
            if on_progress is not None:
                on_progress(1)
            try:
                results.append(session.record(change, entity_ids[number]))
            except InvalidChange as error:
                if line_numbers is None:
                    raise
                raise error.at_line(line_numbers[number]) from None
        if close_batch:
            for batch in session.batches.values():
                added = sum(1 for entry in session.entries.values() if entry.batch == batch.name)
                batch.close(self.index.batch_count(batch.name) + added)
        extra, kwargs = settle() if settle is not None else ([], {})
        recordings = session.save(extra, kwargs)
        # The receipts of new actions are made now that their positions are known.
        positions = {id(r.domain_event): r.notification.id for r in recordings}
        return [
            result
            if isinstance(result, Receipt)
            else Receipt(_action_view(result, positions[id(result)]))
            for result in results
        ]

    def refusals(self, changes: Sequence[Change]) -> list[InvalidChange | None]:
        """What recording each change would refuse now (None: it would be recorded), checked
        in order as `record_all` checks them but saving nothing, so a run can leave a refused
        change unwritten instead of finding out after the target has it."""
        session = _Session(self, {})
        entity_ids = [change.address.entity_id for change in changes]
        loaded = self._load_entities(entity_ids)
        session.entities.update((entity_id, loaded[entity_id]) for entity_id in entity_ids)
        found: list[InvalidChange | None] = []
        for change, entity_id in zip(changes, entity_ids, strict=True):
            try:
                session.record(change, entity_id)
                found.append(None)
            except InvalidChange as error:
                found.append(error)
        return found

    def _open_batch(self, batches: dict[str, Batch], change: Change) -> Batch:
        name = cast(str, change.batch)
        if name not in batches:
            try:
                batch = cast(Batch, self.repository.get(batch_id(name)))
            except AggregateNotFoundError:
                batch = Batch.open(
                    name,
                    workflow=change.workflow,
                    workflow_version=change.workflow_version,
                    actor=change.actor,
                    trigger=change.trigger,
                )
            batches[name] = batch
        batch = batches[name]
        if batch.closed:
            raise BatchClosed(f"batch {name!r} is closed; record {change.address} in a new batch")
        return batch

    def _entity(self, entities: dict[UUID, Entity | None], entity_id: UUID) -> Entity | None:
        if entity_id not in entities:
            try:
                entities[entity_id] = cast(Entity, self.repository.get(entity_id))
            except AggregateNotFoundError:
                entities[entity_id] = None
        return entities[entity_id]

    def _load_entities(self, entity_ids: Sequence[UUID]) -> dict[UUID, Any]:
        """Many aggregates (records, batches) in a few queries (the repository reads them
        one by one): each from its latest snapshot, if any, and the events after it."""
        ids = list(dict.fromkeys(entity_ids))
        snapshots_table = (
            cast(Any, self.snapshots.recorder).events_table_name
            if self.snapshots is not None
            else None
        )
        snapshots, events = self.index.latest_stored_events(
            cast(Any, self.recorder).events_table_name, snapshots_table, ids
        )
        loaded: dict[UUID, Any] = {}
        for entity_id in ids:
            entity: Any = None
            if entity_id in snapshots:
                entity = cast(Any, self.mapper.to_domain_event(snapshots[entity_id])).mutate(None)
            for stored in events.get(entity_id, ()):
                if entity is None or stored.originator_version > entity.version:
                    entity = cast(Any, self.mapper.to_domain_event(stored)).mutate(entity)
            loaded[entity_id] = entity
        return loaded

    def _action(self, entity_id: UUID, version: int) -> Action:
        (event,) = self.events.get(entity_id, gt=version - 1, lte=version)
        return _action_view(
            cast(Entity.Action, event), self.index.position_of(entity_id, version)[0]
        )

    # Batches ---------------------------------------------------------------------------

    def batch_view(self, name: str) -> BatchView:
        return self._batch_view(self._batch(name), self.index.batch_totals().get(name))

    def close_batch(self, name: str) -> BatchView:
        """Close a batch, counting its actions; closing a closed batch changes nothing."""
        batch = self._batch(name)
        if not batch.closed:
            batch.close(self.index.batch_count(name))
            try:
                self.save(batch)
            except IntegrityError:
                batch = self._batch(name)
        return self._batch_view(batch, self.index.batch_totals().get(name))

    def batches(self) -> list[BatchView]:
        """Every batch, oldest first."""
        totals = self.index.batch_totals()
        views = []
        for notification in self._notifications_of(Batch.Opened):
            batch = cast(Batch, self.repository.get(notification.originator_id))
            views.append(self._batch_view(batch, totals.get(batch.name)))
        return views

    def _batch(self, name: str) -> Batch:
        try:
            return cast(Batch, self.repository.get(batch_id(name)))
        except AggregateNotFoundError:
            raise NotFound(f"no batch named {name!r}; see `ledger batches`") from None

    @staticmethod
    def _batch_view(batch: Batch, totals: tuple[int, int, int] | None) -> BatchView:
        count, first, last = totals or (0, None, None)
        return BatchView(
            name=batch.name,
            workflow=batch.workflow,
            workflow_version=batch.workflow_version,
            actor=batch.actor,
            status="closed" if batch.closed else "open",
            actions=count,
            opened_at=batch.created_on,
            first_position=first,
            last_position=last,
        )

    # Checkpoints -----------------------------------------------------------------------

    def checkpoint(self, name: str) -> CheckpointView:
        """Name the current end of the global log, so it can be returned to later."""
        if not name or ":" in name or looks_like_time(name) or name.isdigit():
            raise InvalidChange(
                f"checkpoint name {name!r} must be non-empty, without ':', and must not "
                "look like a time or a number",
                field="name",
            )
        position = self.recorder.max_notification_id() or 0
        checkpoint = Checkpoint.name_position(name, position)
        try:
            self.save(checkpoint)
        except IntegrityError:
            existing = self._checkpoint(name)
            raise CheckpointExists(
                f"checkpoint {name!r} already names position {existing.position}; "
                "choose another name"
            ) from None
        return CheckpointView(name, position, checkpoint.created_on)

    def checkpoints(self) -> list[CheckpointView]:
        views = []
        for notification in self._notifications_of(Checkpoint.Named):
            checkpoint = cast(Checkpoint, self.repository.get(notification.originator_id))
            views.append(
                CheckpointView(checkpoint.name, checkpoint.position, checkpoint.created_on)
            )
        return views

    def _checkpoint(self, name: str) -> Checkpoint:
        try:
            return cast(Checkpoint, self.repository.get(checkpoint_id(name)))
        except AggregateNotFoundError:
            raise UnknownCheckpoint(
                f"no checkpoint named {name!r}; see `ledger checkpoints`"
            ) from None

    def _notifications_of(self, event_class: type) -> Iterator[Any]:
        topic = f"{event_class.__module__}:{event_class.__qualname__}"
        start = 1
        while True:
            page = self.recorder.select_notifications(start, PAGE_SIZE, topics=[topic])
            yield from page
            if len(page) < PAGE_SIZE:
                return
            start = page[-1].id + 1

    # Point in time ---------------------------------------------------------------------

    def cutoff(self, point: Point | None) -> Cutoff | None:
        """What a point means in the index (a version is per entity, so it has no cutoff)."""
        if point is None or point.kind == "version":
            return None
        if point.kind == "checkpoint":
            return Cutoff("position", self._checkpoint(cast(str, point.value)).position)
        if point.kind == "position":
            return Cutoff("position", cast(int, point.value))
        kind = "recorded" if point.kind == "time" else "effective"
        return Cutoff(kind, to_micros(cast(datetime, point.value)))

    def history(self, address: Address, *, follow: bool = True) -> list[Action]:
        """Every action on a record, oldest first; after a move to a key the system chose,
        the actions at the new key follow (unless ``follow`` is false)."""
        positions = self.index.positions_of(address.entity_id)
        if not positions:
            raise NotFound(f"{address} has no recorded actions")
        actions = [
            _action_view(cast(Entity.Action, event), positions[event.originator_version][0])
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
    ) -> Iterator[tuple[str, int, int, int, str, dict[str, Any], dict[str, Any]]]:
        """What folding a collection needs — (key, version, position, recorded_at in
        microseconds, operation, before, after) of every action within the cutoff — key by
        key, page by page, each key's actions in the order they fold: by version, or for an
        effective-time cutoff by the time each took effect (ties in recorded order)."""
        rows = self._collection_actions(system, collection, cutoff)
        if cutoff.kind == "effective":
            yield from _in_effective_order(rows)
        else:
            yield from rows

    def _collection_actions(
        self, system: str, collection: str, cutoff: Cutoff
    ) -> Iterator[tuple[Any, ...]]:
        """`collection_actions` in (key, version) order; for an effective-time cutoff each row
        also carries when the action took effect and when it was recorded."""
        mapper, transcoder = self.mapper, self.mapper.transcoder
        # Read just those fields of the stored state, each decoded as the transcoder decodes
        # it, unless a cipher or compressor is configured (then the library's mapper reads
        # the whole event).
        decode = None
        no_cipher_or_compressor = mapper.cipher is None and mapper.compressor is None
        if isinstance(transcoder, OrjsonTranscoder) and no_cipher_or_compressor:
            decode = transcoder.decode_fields
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


def _action_view(event: Entity.Action, position: int | None) -> Action:
    return Action(
        entity=event.address,
        entity_id=event.originator_id,
        version=event.originator_version,
        position=position,
        operation=event.operation,
        before=event.before,
        after=event.after,
        compensation=event.compensation,
        inputs=event.inputs,
        workflow=event.workflow,
        workflow_version=event.workflow_version,
        batch=event.batch,
        actor=event.actor,
        trigger=event.trigger,
        sources=tuple(event.sources),
        recorded_at=event.timestamp,
        effective_at=event.effective_at,
        fingerprint=event.fingerprint,
        compensates=tuple(event.compensates),
        replays=tuple(event.replays),
        moved_to=event.moved_to,
        requested=event.requested,
    )


def _retry_receipt(change: Change, action: Action) -> Receipt:
    """The first receipt, for a change whose fingerprint is already recorded — refused when the
    change does something else than that action."""
    reused = reused_fingerprint(change, action)
    if reused is not None:
        raise reused
    return Receipt(action, True)


class _Session:
    """One attempt at recording a list of changes: the aggregates loaded and changed so far."""

    def __init__(self, ledger: Ledger, recorded: dict[str, Any]):
        self.ledger = ledger
        self.recorded = recorded
        self.entities: dict[UUID, Entity | None] = {}
        self.batches: dict[str, Batch] = {}
        self.entries: dict[tuple[UUID, int], IndexEntry] = {}
        self.recorded_now: dict[str, Entity.Action] = {}  # by fingerprint

    def save(self, extra: list[Any], kwargs: dict[str, Any]) -> list[Recording[UUID]]:
        """Save the changed batches and records, then ``extra``, with the action index rows,
        in one transaction."""
        changed = [
            aggregate
            for aggregate in (*self.batches.values(), *self.entities.values())
            if aggregate is not None and aggregate.pending_events
        ]
        return self.ledger.save(*changed, *extra, actions=self.entries, **kwargs)

    def record(self, change: Change, entity_id: UUID | None = None) -> Receipt | Entity.Action:
        """The receipt of a change recorded before, or the event of a new action (its
        receipt is made once the event is saved and its position known)."""
        entity_id = entity_id or change.address.entity_id
        if change.expected is not None and change.image is ABSENT:
            raise InvalidChange(
                f"{change.address}: 'expected' is checked against the target system, so it "
                "needs a write through an adapter (`ledger apply`); use 'before' to check "
                "against the ledger",
                field="expected",
            )
        if change.fingerprint in self.recorded:
            where = self.recorded[change.fingerprint]
            return _retry_receipt(change, self.ledger._action(where.entity_id, where.version))
        entity = self.ledger._entity(self.entities, entity_id)
        version = entity.version if entity is not None else 0
        # The fingerprint a retry of the record's latest action would have (no record, no retry).
        retry = None
        if entity is not None:
            retry = change.fingerprint_in(cast(str, change.batch), version - 1)
        if entity is not None and entity.last_fingerprint == retry:
            # A retry of the record's latest action: answer with its receipt.
            earlier = self.recorded_now.get(cast(str, retry))
            action = (
                _action_view(earlier, None)
                if earlier is not None
                else self.ledger._action(entity.id, version)
            )
            return _retry_receipt(change, action)
        fingerprint = change.fingerprint_in(cast(str, change.batch), version)
        if fingerprint in self.recorded_now:
            return _retry_receipt(change, _action_view(self.recorded_now[fingerprint], None))
        drift = observed_drift(change, entity)
        if drift is not None:
            self.record(drift, entity_id)  # adopt the outside edit the target shows, then act
            entity = self.entities[entity_id]
            fingerprint = change.fingerprint_in(
                cast(str, change.batch), cast(Entity, entity).version
            )
        batch = self.ledger._open_batch(self.batches, change)
        fields = {
            **resolve(change, entity),
            "inputs": change.inputs,
            "workflow": change.workflow,
            "workflow_version": change.workflow_version,
            "batch": batch.name,
            "actor": change.actor,
            "trigger": change.trigger,
            "sources": list(change.sources),
            "effective_at": change.effective_at,
            "fingerprint": fingerprint,
            "compensates": list(change.compensates),
            "replays": list(change.replays),
            "moved_to": change.moved_to,
            "requested": change.requested,
        }
        if entity is None:
            entity = Entity.first(change.address, **fields)
        else:
            entity.record(**fields)
        self.entities[entity.id] = entity
        event = cast(Entity.Action, entity.pending_events[-1])
        self.entries[(entity.id, event.originator_version)] = IndexEntry(
            system=change.address.system,
            collection=change.address.collection,
            key=change.address.key,
            operation=event.operation,
            batch=batch.name,
            workflow=change.workflow,
            recorded_at=to_micros(event.timestamp),
            effective_at=to_micros(change.effective_at) if change.effective_at else None,
            fingerprint=fingerprint,
        )
        self.recorded_now[fingerprint] = event
        return event
