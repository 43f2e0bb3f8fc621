"""A workflow run through adapters: every write declared, applied compare-and-set, then settled.

The target write and the ledger append live in different stores, so each chunk of changes
follows one protocol (docs/reliability.md lists its failure cases):

1. changes whose fingerprint is already an action in the ledger are answered, not re-applied;
   an intent a crashed run left pending for one of them is settled first, by reading the target;
2. the records' current state is read from the target in one round trip;
3. a change whose ``expected`` values no longer hold is refused before anything is written;
4. intents are declared in one ledger transaction: no write reaches a target unrecorded;
5. the writes go to the target compare-and-set, in one transaction or request per chunk;
6. they are settled in one ledger transaction: applied writes become actions carrying the
   exact before-image; refused ones are settled as stale or failed.

Settling (6) is `ledger.settlement`. A crash between 4 and 6 leaves intents pending; `recover`
reads the target to settle each as applied or not applied. So does a write whose outcome the
adapter could not know (``unknown``: its answer was lost and the system stopped answering): it
stays pending, never ``failed``.

Before 1, each chunk passes the lanes' gate (`Ledger.admit`): a workflow paused meanwhile, by
any process, stops the run there, with every earlier chunk written and settled. After 6, the
chunk's outcomes feed the run's statistics and the lane's stop triggers judge them
(`ledger.run_lanes`): a trip pauses the lane and stops the run at that chunk.

Just over 400 lines: the run's chunk loop (locks, intents, writes, retries) is one protocol
read best in one place; what happens after a write is in `ledger.settlement`.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, cast

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ledger.application import Ledger
from ledger.changes import Change, reused_fingerprint
from ledger.domain import Address, Intent, intent_id
from ledger.errors import (
    BatchClosed,
    CanaryLimit,
    InvalidChange,
    NotFound,
    StaleWrite,
    TransientError,
)
from ledger.lanes import LaneConfig
from ledger.ports import Adapter, Record, Write, WriteResult
from ledger.run_lanes import RunLane
from ledger.settlement import (
    Outcome,
    compare_and_set,
    intent_payload,
    recover,
    refusal,
    settle,
    stale_before_writing,
)
from ledger.store import PendingIntent, SaveContext
from ledger.triggers import Trip
from ledger.views import Receipt

__all__ = ["Outcome", "Run", "System", "Target", "recover"]

CHUNK_SIZE = 500
WRITE_ATTEMPTS = 5


@dataclass(frozen=True)
class Target:
    """A collection of a system, as reached through its adapter."""

    adapter: Adapter
    collection: str

    def address(self, key: Any) -> Address:
        address = Address(self.adapter.system, self.collection, str(key))
        address.check()
        return address


class System:
    """An adapter whose collections read as attributes: ``crm = System(adapter); crm.contacts``."""

    def __init__(self, adapter: Adapter):
        self.adapter = adapter

    def __getattr__(self, collection: str) -> Target:
        if collection.startswith("_"):
            raise AttributeError(collection)
        return Target(self.adapter, collection)

    def __getitem__(self, collection: str) -> Target:
        return Target(self.adapter, collection)


class Run:
    """One run of a workflow (one batch), writing through adapters exactly once.

    ``limit`` makes it a canary: only the batch's first N actions may be applied.
    ``stop_on_stale`` stops the run at the first refused write instead of going on.
    ``lanes`` are the configured lane rows (or the run's workflow's one): the stop triggers
    judged after each chunk. Used as a context manager, a run that ends without an error (or
    at its canary limit) is finished (`finish`): judged once more (``too_few``) and recorded;
    its batch is closed when whole.
    """

    def __init__(
        self,
        ledger: Ledger,
        batch: str,
        *,
        workflow: str | None = None,
        workflow_version: str | None = None,
        actor: str | None = None,
        trigger: str | None = None,
        limit: int | None = None,
        stop_on_stale: bool = False,
        lanes: Mapping[str, LaneConfig] | LaneConfig | None = None,
    ):
        self.ledger = ledger
        self.batch = batch
        self.defaults = {
            "batch": batch,
            "workflow": workflow,
            "workflow_version": workflow_version,
            "actor": actor,
            "trigger": trigger,
        }
        self.limit = limit
        self.stop_on_stale = stop_on_stale
        self.counts: Counter[str] = Counter()
        self.retries = 0  # chunks written again after a transient failure
        self.warnings: list[str] = []
        self._occurrences: Counter[str] = Counter()
        self._checked: set[Target] = set()
        self.lane = RunLane(ledger, batch, workflow, lanes)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None or kind is CanaryLimit:  # a canary at its limit ran to its end
            self.finish()
        if kind is None and self.closable:
            self.ledger.close_batch(self.batch)

    def finish(self, *, completed: bool = True) -> Trip | None:
        """The run is over: judge what needs its end (``too_few``; a trip pauses the lane for
        the next run) and record its statistics, once per batch (the past later runs are
        judged against, a canary's proof). ``completed``: it went through everything it was
        given, or up to its limit."""
        return self.lane.finish(completed=completed)

    @property
    def closable(self) -> bool:
        """Something landed and nothing is left: a batch with refused or failed changes stays
        open so the fixed ones can be run into it again, and one with a pending write stays
        open for `recover` to record it there."""
        landed = self.counts["applied"] + self.counts["already_applied"]
        left = sum(self.counts[s] for s in ("stale", "failed", "not_applied", "pending"))
        return bool(landed) and not left

    # One change at a time (a live automation) -------------------------------------------

    def create(self, target: Target, key: Any, values: Record, **details: Any) -> Outcome:
        return self.change(target, Change(target.address(key), "create", values=values, **details))

    def update(self, target: Target, key: Any, values: Record, **details: Any) -> Outcome:
        return self.change(target, Change(target.address(key), "update", values=values, **details))

    def delete(self, target: Target, key: Any, **details: Any) -> Outcome:
        return self.change(target, Change(target.address(key), "delete", **details))

    def change(self, target: Target, change: Change) -> Outcome:
        (outcome,) = self.apply(target, [change])
        return outcome

    # Many changes (a batch job) ---------------------------------------------------------

    def apply(
        self,
        target: Target,
        changes: Iterable[Change],
        *,
        chunk_size: int = CHUNK_SIZE,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[Outcome]:
        """Apply changes to one collection, chunk by chunk, each chunk exactly once."""
        outcomes: list[Outcome] = []
        for settled in self.apply_chunks(
            target, changes, chunk_size=chunk_size, on_progress=on_progress
        ):
            outcomes.extend(settled)
        return outcomes

    def apply_chunks(
        self,
        target: Target,
        changes: Iterable[Change],
        *,
        chunk_size: int = CHUNK_SIZE,
        on_progress: Callable[[int], None] | None = None,
    ) -> Iterator[list[Outcome]]:
        """`apply`, yielding each chunk's outcomes once it is settled: a caller that keeps
        only what it needs of them (and passes the changes as an iterator) runs in memory
        that does not grow with the batch."""
        for chunk in _chunks(iter(changes), chunk_size):
            for change in chunk:
                if (change.address.system, change.address.collection) != (
                    target.adapter.system,
                    target.collection,
                ):
                    raise InvalidChange(
                        f"{change.address} is not in {target.adapter.system}/{target.collection}",
                        field="entity",
                    )
            prepared = [self._prepare(_typed(target, change)) for change in chunk]
            canary = self.lane.admit(prepared)  # the gate: before anything of the chunk
            if canary is not None and (self.limit is None or canary.limit < self.limit):
                self.limit = canary.limit  # a paused lane's canary batch caps itself
            # From reading the target to settling in the ledger, no other run touches these
            # records: it would take this run's unsettled writes for outside edits.
            locked = self.ledger.index.lock_records([str(change.address) for change in chunk])
            with locked, _collector_paused():
                settled = self._apply_chunk(target, prepared, on_progress or _ignore)
            yield settled

    def check(self, target: Target, keys: Sequence[str] = ()) -> list[str]:
        """Ask the target's adapter, once, whether its writes can be trusted before any is
        made: raises if the system's settings say they must be and they are not; returns the
        warnings to show before the run (and keeps them in `warnings`)."""
        if target in self._checked:
            return []
        check = getattr(target.adapter, "check_writes", None)  # adapters that need it
        found: list[str] = check(target.collection, keys) if check is not None else []
        self._checked.add(target)
        self.warnings.extend(found)
        return found

    def _prepare(self, change: Change) -> Change:
        change = change.with_defaults(**self.defaults)
        if change.fingerprint:
            return change
        content = change.content_hash(batch=self.batch)
        self._occurrences[content] += 1
        return change.evolve(
            fingerprint=change.content_hash(batch=self.batch, occurrence=self._occurrences[content])
        )

    def _apply_chunk(
        self, target: Target, chunk: list[Change], on_progress: Callable[[int], None]
    ) -> list[Outcome]:
        fingerprints = [cast(str, change.fingerprint) for change in chunk]
        waiting = {intent.fingerprint for intent in self.ledger.index.pending(self.batch)}
        if waiting & set(fingerprints):
            recover(self.ledger, {target.adapter.system: target.adapter}, batch=self.batch)
        done = self.ledger.index.find_fingerprints(fingerprints)
        outcomes: dict[int, Outcome] = {}
        todo = []
        for index, change in enumerate(chunk):
            if change.fingerprint in done:
                where = done[cast(str, change.fingerprint)]
                action = self.ledger._action(where.entity_id, where.version)
                reused = reused_fingerprint(change, action)
                if reused is not None:
                    outcomes[index] = Outcome(str(change.address), "failed", error=reused.reason)
                else:
                    receipt = Receipt(action, True)
                    outcomes[index] = Outcome(str(change.address), "already_applied", receipt)
            else:
                todo.append(index)
        todo, beyond_limit = self._within_limit(chunk, todo)
        images = target.adapter.read(target.collection, [chunk[i].address.key for i in todo])
        writes: dict[int, Write] = {}
        for index in todo:
            change = chunk[index].evolve(image=images[chunk[index].address.key])
            chunk[index] = change
            refused = stale_before_writing(change)
            if refused is not None:
                outcomes[index] = refused
            else:
                writes[index] = compare_and_set(change)
        # Whatever recording would refuse (a `before` contradicting the ledger, a create of a
        # record the ledger knows) is refused now, before anything reaches the target.
        checks = self.ledger.refusals([chunk[i] for i in writes]) if writes else []
        for index, error in zip(list(writes), checks, strict=True):
            if error is not None:
                del writes[index]
                outcomes[index] = refusal(chunk[index], error)
        if writes:
            self._refuse_if_closed(chunk[next(iter(writes))])
            self.check(target, [w.key for w in writes.values() if w.operation != "create"])
        if len(chunk) > len(writes):
            on_progress(len(chunk) - len(writes))
        intents = self._declare([chunk[i] for i in writes])
        results = self._write(target, list(writes.values()), on_progress)
        settled = settle(
            self.ledger,
            [(chunk[i], result) for i, result in zip(writes, results, strict=True)],
            intents,
        )
        outcomes.update(zip(writes, settled, strict=True))
        ordered = [outcomes[i] for i in sorted(outcomes)]
        self.counts.update(outcome.status for outcome in ordered)
        self.lane.judge(ordered)  # a trip pauses the lane and stops the run here
        if beyond_limit is not None:
            raise CanaryLimit(
                f"batch {self.batch!r} is a canary limited to its first {self.limit} actions; "
                f"{beyond_limit.address} and the changes after it were not applied"
            )
        if self.stop_on_stale:
            for outcome in ordered:
                if outcome.status == "stale":
                    raise StaleWrite(
                        outcome.entity, cast(str, outcome.field), outcome.expected, outcome.actual
                    )
        return ordered

    def _refuse_if_closed(self, change: Change) -> None:
        """A closed batch takes no new action: refuse before anything reaches the target."""
        try:
            closed = self.ledger._batch(self.batch).closed
        except NotFound:
            return
        if closed:
            raise BatchClosed(
                f"batch {self.batch!r} is closed; {change.address} and the other new changes "
                "were not applied (retries of actions it holds are still answered)"
            )

    def _within_limit(
        self, chunk: list[Change], todo: list[int]
    ) -> tuple[list[int], Change | None]:
        """The changes a canary may still apply, and the first one it may not."""
        if self.limit is None:
            return todo, None
        allowed = max(self.limit - self.ledger.index.batch_count(self.batch), 0)
        if len(todo) <= allowed:
            return todo, None
        return todo[:allowed], chunk[todo[allowed]]

    def _declare(self, changes: list[Change]) -> dict[str, Intent]:
        """Declare the intents in one transaction; most are new, so try that first."""
        if not changes:
            return {}
        pending = [
            PendingIntent(
                cast(str, c.fingerprint),
                self.batch,
                c.address.system,
                c.address.collection,
                c.address.key,
            )
            for c in changes
        ]
        intents = {
            cast(str, c.fingerprint): Intent.declare(
                cast(str, c.fingerprint), c.address, intent_payload(c)
            )
            for c in changes
        }
        try:
            self.ledger.save(*intents.values(), context=SaveContext(declared=pending))
            return intents
        except IntegrityError:
            pass  # an earlier attempt of some of these was not applied: declare them again
        intents = {}
        for change in changes:
            fingerprint = cast(str, change.fingerprint)
            try:
                intent = cast(Intent, self.ledger.repository.get(intent_id(fingerprint)))
                intent.redeclare(intent_payload(change))
            except AggregateNotFoundError:
                intent = Intent.declare(fingerprint, change.address, intent_payload(change))
            intents[fingerprint] = intent
        self.ledger.save(*intents.values(), context=SaveContext(declared=pending))
        return intents

    def _write(
        self, target: Target, writes: list[Write], on_progress: Callable[[int], None]
    ) -> list[WriteResult]:
        if not writes:
            return []

        def counted(state: RetryCallState) -> None:
            self.retries += 1

        retrying = Retrying(
            stop=stop_after_attempt(WRITE_ATTEMPTS),
            wait=wait_exponential_jitter(multiplier=0.05, max=2.0),
            retry=retry_if_exception_type(TransientError),
            before_sleep=counted,
            reraise=True,
        )
        # An adapter writing one request per record reports each as it settles (progress per
        # write, not per chunk); a retried chunk is not counted twice.
        reported = [0]

        def one_written(result: WriteResult) -> None:
            if reported[0] < len(writes):
                reported[0] += 1
                on_progress(1)

        adapter = target.adapter
        hooked = hasattr(adapter, "on_write")
        if hooked:
            adapter.on_write = one_written  # type: ignore[attr-defined]
        try:
            results = retrying(adapter.write, target.collection, writes)
        finally:
            if hooked:
                adapter.on_write = None  # type: ignore[attr-defined]
        if reported[0] < len(writes):
            on_progress(len(writes) - reported[0])
        return cast("list[WriteResult]", results)


def _typed(target: Target, change: Change) -> Change:
    """The change with its values (and expected values) as the target will store them."""
    adapter, collection = target.adapter, target.collection
    values = adapter.normalize(collection, change.values) if change.values else change.values
    expected = change.expected
    if expected:
        expected = adapter.normalize(collection, expected)
    if values is change.values and expected is change.expected:
        return change  # nothing converted (the usual case): no copy, no second check
    return replace(change, values=values, expected=expected)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A chunk allocates several objects per change (intents, events, stored events, outcomes),
    none in a reference cycle; CPython's cyclic collector would walk them again as the heap
    grows, finding nothing to free. Paused for one chunk (bounded), as `record_all` does."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _ignore(count: int) -> None:
    """No progress to report."""


def _chunks(changes: Iterator[Change], size: int) -> Iterator[list[Change]]:
    """Chunks of at most `size` changes, each touching a record at most once (a later change
    to the same record must see what the earlier one wrote, so it goes in the next chunk)."""
    chunk: list[Change] = []
    keys: set[str] = set()
    for change in changes:
        if len(chunk) == size or change.address.key in keys:
            yield chunk
            chunk, keys = [], set()
        chunk.append(change)
        keys.add(change.address.key)
    if chunk:
        yield chunk
