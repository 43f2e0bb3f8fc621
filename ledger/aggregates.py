"""The library's Application as the ledger uses it: its settings from ``--db`` alone, the exact
transcoder, the action index, and aggregates saved and loaded many at a time.

`Ledger` (`ledger.application`) is this class with recording (`ledger.recording`) and the
read side (`ledger.queries`) mixed in; each of those builds only on what is here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import Recording, Transcoder
from eventsourcing.utils import Environment, EnvType

from ledger.domain import Batch, Checkpoint, Entity, batch_id, checkpoint_id
from ledger.errors import NotFound, UnknownCheckpoint
from ledger.store import IndexedRecorder, SaveContext
from ledger.store.library_seams import (
    ledger_environment,
    project_aggregates,
    save_aggregates,
)
from ledger.transcoder import OrjsonTranscoder
from ledger.views import ActionView


class AggregateStore(Application[UUID]):
    """Saves and loads the ledger's aggregates (records, batches, checkpoints, intents)."""

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """The settings given (`ledger.bootstrap.store_env`) and nothing else: the library
        would add ``os.environ`` (see `ledger_environment`)."""
        return ledger_environment(type(self), name, env)

    def construct_transcoder(self) -> Transcoder:
        return OrjsonTranscoder()

    @property
    def index(self) -> IndexedRecorder:
        return cast(IndexedRecorder, self.recorder)

    def save(
        self, *objs: Any, context: SaveContext | None = None, **kwargs: Any
    ) -> list[Recording[UUID]]:
        """Save aggregates in one transaction, with the rows ``context`` names (the action
        index, the queue of pending intents) in that same transaction."""
        if kwargs:
            raise TypeError(f"Ledger.save takes context=SaveContext(...), not {sorted(kwargs)}")
        return save_aggregates(self, objs, context)

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
        return project_aggregates(self.mapper, ids, snapshots, events)

    def _action(self, entity_id: UUID, version: int) -> ActionView:
        (event,) = self.events.get(entity_id, gt=version - 1, lte=version)
        return action_view(
            cast(Entity.Action, event), self.index.position_of(entity_id, version)[0]
        )

    def _batch(self, name: str) -> Batch:
        try:
            return cast(Batch, self.repository.get(batch_id(name)))
        except AggregateNotFoundError:
            raise NotFound(f"no batch named {name!r}; see `ledger batches`") from None

    def _checkpoint(self, name: str) -> Checkpoint:
        try:
            return cast(Checkpoint, self.repository.get(checkpoint_id(name)))
        except AggregateNotFoundError:
            raise UnknownCheckpoint(
                f"no checkpoint named {name!r}; see `ledger checkpoints`"
            ) from None


def action_view(event: Entity.Action, position: int | None) -> ActionView:
    return ActionView(
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
