"""The ledger application: records actions exactly once and answers from any point in time.

Built on the eventsourcing library's Application: its repository, snapshots, notification
log and recorders do the storing. `Ledger` puts together the ledger's jobs, one module each:
saving and loading aggregates (`ledger.aggregates`), recording (`ledger.recording`), the read
side (`ledger.queries`), and here batches and checkpoints, the names given to parts of the log.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, cast

from eventsourcing.persistence import IntegrityError

from ledger.domain import Batch, Checkpoint, Entity
from ledger.errors import CheckpointExists, InvalidChange
from ledger.points import looks_like_time
from ledger.queries import PAGE_SIZE, Queries
from ledger.recording import Recording
from ledger.views import BatchView, CheckpointView


class Ledger(Recording, Queries):
    """Records workflow actions and shows any record or collection at any point."""

    name = "Ledger"
    snapshotting_intervals: ClassVar = {Entity: 100}

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

    def _notifications_of(self, event_class: type) -> Iterator[Any]:
        topic = f"{event_class.__module__}:{event_class.__qualname__}"
        start = 1
        while True:
            page = self.recorder.select_notifications(start, PAGE_SIZE, topics=[topic])
            yield from page
            if len(page) < PAGE_SIZE:
                return
            start = page[-1].id + 1
