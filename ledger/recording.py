"""Recording changes exactly once: all or nothing, retried against fresh state when another
writer got there first, a retry answered with the first receipt.

A mixin of `Ledger`: `Recording` adds `admit` (the lanes' gate), `record`, `record_all` and
`refusals` to the `AggregateStore`; `_Session` is one attempt at recording a list of changes.
"""

from __future__ import annotations

import gc
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError
from eventsourcing.persistence import Recording as Saved

from ledger.aggregates import AggregateStore, action_view
from ledger.changes import Change, observed_drift, resolve, reused_fingerprint
from ledger.domain import Batch, Entity, batch_id
from ledger.errors import BatchClosed, CanaryLimit, ConcurrencyConflict, InvalidChange, LanePaused
from ledger.lane_control import LaneStore, ensure_open
from ledger.lanes import Canary
from ledger.logs import get_logger
from ledger.store import IndexedAction, IndexEntry, SaveContext, to_micros
from ledger.store.saving import NOTHING
from ledger.values import ABSENT
from ledger.views import ActionView, Receipt

MAX_ATTEMPTS = 25
# Changes loaded, checked and inserted at a time inside a batch's one transaction, where the
# store holds one open (SQLite): the aggregates, events and index rows of a chunk are dropped
# once it is inserted, so a batch's memory does not grow with its size.
CHUNK = 5_000

# What settles writes in the transaction that records them (`ledger.settlement`): more
# aggregates to save, and what else to store with them; built afresh for each attempt.
Settle = Callable[[], tuple[list[Aggregate], SaveContext]]

log = get_logger(__name__)


class Recording(AggregateStore):
    """Records changes as actions of their records, each exactly once."""

    def admit(self, changes: Sequence[Change], batch: str | None = None) -> dict[str, Canary]:
        """THE gate every new write passes before anything of it is written, to the ledger or a
        target: `record_all` calls it (record, import, track, adoptions), and so does a `Run`
        before each chunk declares its intents (apply, rollback, replay, corrections).
        `LanePaused` names the pause of a paused workflow among the changes' workflows and, for
        a replay, the workflows of the actions it redoes (a replay redoes what the paused
        workflow did). A rollback's compensations are its own workflow's (``rollback``), so
        the repair of a paused workflow's batch goes through. One lane read per distinct
        workflow; a paused lane's canary batch is admitted, returned so the caller caps it."""
        workflows: set[str | None] = {change.workflow for change in changes}
        replayed = [fingerprint for change in changes for fingerprint in change.replays]
        return self._admit(workflows, replayed, batch)

    def _admit(
        self, workflows: set[str | None], replayed: Sequence[str], batch: str | None
    ) -> dict[str, Canary]:
        if replayed:
            workflows |= self._workflows_of(replayed)
        try:
            return ensure_open(cast(LaneStore, self), workflows, batch=batch)
        except LanePaused as paused:
            log.info("gate.refused", batch=batch, reason=str(paused))
            raise

    def _workflows_of(self, fingerprints: Sequence[str]) -> set[str | None]:
        """The workflows of recorded actions (one read each: only replays ask)."""
        found = self.index.find_fingerprints(fingerprints)
        return {self._action(where.entity_id, where.version).workflow for where in found.values()}

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
        settle: Settle | None = None,
        **defaults: Any,
    ) -> list[Receipt]:
        """Record changes all or nothing, in one transaction, retrying against fresh state when
        another writer got there first. ``defaults`` fill each change's empty batch and
        workflow fields; without a batch, the changes get a new batch of their own.
        ``settle`` returns more aggregates and rows to save in the same transaction
        (built afresh for each attempt).

        New changes pass the gate first (`admit`); settling writes is not gated: those
        writes landed in their targets already, admitted when their intents were declared,
        and refusing to record them would leave the target changed and the ledger unaware."""
        outcome = self._record_batch(
            changes, line_numbers, close_batch, on_progress, settle, defaults, keep=True
        )
        return outcome.receipts

    def record_stream(self, changes: Sequence[Change], **defaults: Any) -> Recorded:
        """`record_all` for a batch of any size: the same checks, gate and single transaction,
        counting the actions instead of returning a receipt each. On SQLite it holds one
        chunk of changes in memory at a time (``changes`` may make its items on access)."""
        return self._record_batch(changes, None, False, None, None, defaults, keep=False).counted

    def _record_batch(
        self,
        changes: Sequence[Change],
        line_numbers: Sequence[int] | None,
        close_batch: bool,
        on_progress: Callable[[int], None] | None,
        settle: Settle | None,
        defaults: dict[str, Any],
        *,
        keep: bool,
    ) -> _Outcome:
        defaults.setdefault("batch", None)
        if defaults["batch"] is None and any(change.batch is None for change in changes):
            defaults["batch"] = "batch-" + uuid.uuid4().hex[:12]
        # A large batch allocates several objects per action (events, their values, stored
        # events, receipts), none in a reference cycle. CPython's cyclic collector would walk
        # all of them again each time the heap grows by a quarter: about a sixth of the time
        # of the batch, finding nothing to free. It is paused while the batch is recorded.
        pause_gc = len(changes) >= 1000 and gc.isenabled()
        if pause_gc:
            gc.disable()
        try:
            for attempt in range(MAX_ATTEMPTS):
                try:
                    # SQLite: one write transaction from the gate's read to the commit, so
                    # nothing another writer commits can come between what was read and what
                    # is written (and three transactions per `record` become one).
                    with self.index.held_transaction():
                        return self._record_once(
                            changes, defaults, line_numbers, close_batch, on_progress, settle, keep
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

    def _admit_chunk(
        self, chunk: Sequence[Change], admitted: dict[str | None, int], written: dict[str, int]
    ) -> None:
        """The gate, per batch, for one chunk of changes (defaults filled) before any of it is
        loaded or saved; a canary batch of a paused lane may not grow past its limit.
        ``admitted`` counts, per batch, the changes admitted so far and ``written`` the actions
        the attempt saved into it, so the chunks of one transaction are capped as the whole
        batch would be. A refusal in a later chunk rolls back the transaction (a batch
        in chunks is one held transaction), so nothing of it is written."""
        by_batch: dict[str | None, tuple[set[str | None], list[str], list[int]]] = {}
        for change in chunk:
            seen, replays, counter = by_batch.setdefault(change.batch, (set(), [], [0]))
            seen.add(change.workflow)
            replays.extend(change.replays)
            counter[0] += 1
        for batch, (workflows, replayed, counter) in by_batch.items():
            count = counter[0]
            canaries = self._admit(workflows, replayed, batch)
            total = admitted[batch] = admitted.get(batch, 0) + count
            for canary in canaries.values():
                # What the batch held before this attempt: what it holds now, less what
                # the attempt's earlier chunks wrote into it.
                before = self.index.batch_count(batch) - written.get(batch, 0) if batch else 0
                if batch is not None and before + total > canary.limit:
                    raise CanaryLimit(
                        f"batch {batch!r} is the canary of a paused lane, limited to "
                        f"{canary.limit} actions; these {total} would take it past that, "
                        "so nothing was recorded"
                    )

    def _record_once(
        self,
        changes: Sequence[Change],
        defaults: dict[str, Any],
        line_numbers: Sequence[int] | None,
        close_batch: bool,
        on_progress: Callable[[int], None] | None,
        settle: Settle | None,
        keep: bool,
    ) -> _Outcome:
        """One attempt. Inside a held transaction the changes go in chunks, each loaded,
        checked and inserted before the next is read (reads see the chunks before); without
        one (PostgreSQL) they are one chunk, saved at once."""
        size = CHUNK if self.index.holds_transactions else max(1, len(changes))
        session = _Session(self, {})
        outcome = _Outcome()
        admitted: dict[str | None, int] = {}
        for start in range(0, len(changes), size):
            if start:
                session.flush([], NOTHING, outcome, keep)
            chunk = [change.with_defaults(**defaults) for change in changes[start : start + size]]
            if settle is None:
                self._admit_chunk(chunk, admitted, session.written)
            entity_ids = self._load_chunk(session, chunk)
            for number, (change, entity_id) in enumerate(
                zip(chunk, entity_ids, strict=True), start
            ):
                if on_progress is not None:
                    on_progress(1)
                try:
                    session.results.append(session.record(change, entity_id))
                except InvalidChange as error:
                    if line_numbers is None:
                        raise
                    raise error.at_line(line_numbers[number]) from None
        if close_batch:
            if self.index.holds_transactions:
                session.flush([], NOTHING, outcome, keep)
            for batch in session.batches.values():
                added = sum(1 for entry in session.entries.values() if entry.batch == batch.name)
                batch.close(self.index.batch_count(batch.name) + added)
        extra, context = settle() if settle is not None else ([], NOTHING)
        session.flush(extra, context, outcome, keep)
        return outcome

    def _load_chunk(self, session: _Session, chunk: Sequence[Change]) -> list[UUID]:
        """Read a chunk's records, the batches not read yet, then the fingerprints: an action
        another writer committed before a record was read is then found as recorded (a
        duplicate), never judged as newer state that contradicts the change being replayed.
        The batches come in the records' query (each is otherwise read when its first change
        is recorded: two more queries for every `record`)."""
        entity_ids = [change.address.entity_id for change in chunk]
        names = dict.fromkeys(cast(str, change.batch) for change in chunk)
        batches = {batch_id(name): name for name in names if name not in session.batches}
        loaded = self._load_entities([*entity_ids, *batches])
        session.entities.update((entity_id, loaded[entity_id]) for entity_id in entity_ids)
        for aggregate_id, name in batches.items():
            if isinstance(loaded[aggregate_id], Batch):
                session.batches[name] = loaded[aggregate_id]
        explicit = [change.fingerprint for change in chunk if change.fingerprint]
        session.recorded = self.index.find_fingerprints(explicit) if explicit else {}
        return entity_ids

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


@dataclass(frozen=True)
class Recorded:
    """How many changes a batch recorded, and how many it found recorded already."""

    recorded: int = 0
    already_recorded: int = 0


@dataclass
class _Outcome:
    """What one attempt at recording a batch produced so far."""

    receipts: list[Receipt] = field(default_factory=list)
    recorded: int = 0
    already_recorded: int = 0

    @property
    def counted(self) -> Recorded:
        return Recorded(self.recorded, self.already_recorded)


def _retry_receipt(change: Change, action: ActionView) -> Receipt:
    """The first receipt, for a change whose fingerprint is already recorded — refused when the
    change does something else than that action."""
    reused = reused_fingerprint(change, action)
    if reused is not None:
        raise reused
    return Receipt(action, True)


class _Session:
    """One attempt at recording a list of changes: the aggregates loaded and changed so far."""

    def __init__(self, ledger: Recording, recorded: dict[str, IndexedAction]):
        self.ledger = ledger
        self.recorded = recorded
        self.entities: dict[UUID, Entity | None] = {}
        self.batches: dict[str, Batch] = {}
        self.entries: dict[tuple[UUID, int], IndexEntry] = {}
        self.recorded_now: dict[str, Entity.Action] = {}  # by fingerprint
        self.results: list[Receipt | Entity.Action] = []
        self.written: dict[str, int] = {}  # actions saved so far, by batch

    def save(self, extra: list[Aggregate], context: SaveContext) -> list[Saved[UUID]]:
        """Save the changed batches and records, then ``extra``, with the action index rows
        and the rest of ``context``, in one transaction."""
        changed = [
            aggregate
            for aggregate in (*self.batches.values(), *self.entities.values())
            if aggregate is not None and aggregate.pending_events
        ]
        return self.ledger.save(*changed, *extra, context=replace(context, actions=self.entries))

    def flush(
        self, extra: list[Aggregate], context: SaveContext, outcome: _Outcome, keep: bool
    ) -> None:
        """Save what was recorded so far, count it (keeping the receipts if asked) and forget
        it: the records are read again, inside the same transaction, if a later chunk acts
        on them."""
        recordings = self.save(extra, context)
        # The receipts of new actions are made now that their positions are known.
        positions = {id(r.domain_event): r.notification.id for r in recordings}
        # A retry of an action recorded earlier in this same call, by (record, version).
        placed = {
            (r.domain_event.originator_id, r.domain_event.originator_version): r.notification.id
            for r in recordings
        }
        for result in self.results:
            if isinstance(result, Receipt):
                outcome.already_recorded += 1
            else:
                outcome.recorded += 1
            if not keep:
                continue
            if not isinstance(result, Receipt):
                result = Receipt(action_view(result, positions[id(result)]))
            elif result.action.position is None:
                action = result.action
                position = placed[(action.entity_id, action.version)]
                result = replace(result, action=replace(action, position=position))
            outcome.receipts.append(result)
        for entry in self.entries.values():
            self.written[entry.batch] = self.written.get(entry.batch, 0) + 1
        self.entities.clear()
        self.entries = {}
        self.recorded_now.clear()
        self.results = []

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
        # The fingerprint a retry of the record's latest action would have (no record, no
        # retry), and this action's own.
        retry, batch_name = None, cast(str, change.batch)
        if entity is None:
            fingerprint = change.fingerprint_in(batch_name, version)
        else:
            retry, fingerprint = change.fingerprints_in(batch_name, version - 1, version)
        if entity is not None and entity.last_fingerprint == retry:
            # A retry of the record's latest action: answer with its receipt.
            earlier = self.recorded_now.get(cast(str, retry))
            action = (
                action_view(earlier, None)
                if earlier is not None
                else self.ledger._action(entity.id, version)
            )
            return _retry_receipt(change, action)
        if fingerprint in self.recorded_now:
            return _retry_receipt(change, action_view(self.recorded_now[fingerprint], None))
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
