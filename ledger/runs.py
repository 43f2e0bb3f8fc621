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

A crash between 4 and 6 leaves intents pending; `recover` reads the target to settle each as
applied or not applied. So does a write whose outcome the adapter could not know (``unknown``:
its answer was lost and the system stopped answering): it stays pending, never ``failed``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
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
from ledger.domain import MOVE, Address, Intent, intent_id
from ledger.encoding import encode_value
from ledger.errors import (
    BatchClosed,
    BeforeMismatch,
    CanaryLimit,
    InvalidChange,
    NotFound,
    StaleWrite,
    TransientError,
)
from ledger.ports import Adapter, Record, Write, WriteResult
from ledger.values import ABSENT, same
from ledger.views import Receipt

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


@dataclass(frozen=True)
class Outcome:
    """What happened to one change in a run."""

    entity: str
    status: str  # "applied", "already_applied", "stale", "failed", "not_applied" or "pending"
    receipt: Receipt | None = None
    field: str | None = None
    expected: Any = None
    actual: Any = None
    error: str | None = None

    @property
    def conflict(self) -> bool:
        """Applied, but an outside value was found right after the write (no conditional
        writes on that system): ``field``, ``expected`` and ``actual`` name it."""
        return self.status == "applied" and self.field is not None

    @property
    def moved_to(self) -> str | None:
        """Where the record was created, when the system chose another key than the one asked."""
        if self.receipt is None or self.receipt.action.entity == self.entity:
            return None
        return self.receipt.action.entity

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {"entity": self.entity, "status": self.status}
        if self.receipt is not None:
            result["version"] = self.receipt.action.version
            result["position"] = self.receipt.action.position
        if self.moved_to is not None:
            result["moved_to"] = self.moved_to
        if self.status == "stale" or self.conflict:
            result.update(
                field=self.field,
                expected=encode_value(self.expected),
                actual=encode_value(self.actual),
            )
        if self.error:
            result["error"] = self.error
        return result


class Run:
    """One run of a workflow (one batch), writing through adapters exactly once.

    ``limit`` makes it a canary: only the batch's first N actions may be applied.
    ``stop_on_stale`` stops the run at the first refused write instead of going on.
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

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None and self.closable:
            self.ledger.close_batch(self.batch)

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
            # From reading the target to settling in the ledger, no other run touches these
            # records: it would take this run's unsettled writes for outside edits.
            with self.ledger.index.lock_records([str(change.address) for change in chunk]):
                outcomes.extend(self._apply_chunk(target, prepared, on_progress or _ignore))
        return outcomes

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
        waiting = {row[0] for row in self.ledger.index.pending(self.batch)}
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
            refused = _early_refusal(change)
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
                outcomes[index] = _refusal(chunk[index], error)
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
            (c.fingerprint, self.batch, c.address.system, c.address.collection, c.address.key)
            for c in changes
        ]
        intents = {
            cast(str, c.fingerprint): Intent.declare(
                cast(str, c.fingerprint), c.address, intent_payload(c)
            )
            for c in changes
        }
        try:
            self.ledger.save(*intents.values(), pending_add=pending)
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
        self.ledger.save(*intents.values(), pending_add=pending)
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


def _touched(change: Change) -> list[str]:
    if change.operation == "delete":
        return sorted(change.image or {})
    return [*change.values, *change.unset]


def _early_refusal(change: Change) -> Outcome | None:
    """A change whose expected values (or whose record's existence) no longer hold."""
    image = change.image
    name = str(change.address)
    if change.operation == "create" and image is not None:
        return Outcome(name, "stale", field="(record)", expected=ABSENT, actual="exists")
    if change.operation != "create" and image is None:
        return Outcome(name, "stale", field="(record)", expected="exists", actual=ABSENT)
    for field, expected in (change.expected or {}).items():
        actual = image.get(field, ABSENT) if image else ABSENT
        if not same(actual, expected):
            return Outcome(name, "stale", field=field, expected=expected, actual=actual)
    return None


def _refusal(change: Change, error: InvalidChange) -> Outcome:
    """A change the ledger refuses: stale when its before-values contradict the ledger's."""
    if isinstance(error, BeforeMismatch):
        return Outcome(
            str(change.address),
            "stale",
            field=error.field,
            expected=error.given,
            actual=error.expected,
            error=error.reason,
        )
    return Outcome(str(change.address), "failed", error=error.reason)


def compare_and_set(change: Change) -> Write:
    """The write for a change: it expects the record to still hold what was read (and what the
    automation saw), for every field it touches — every field, for a delete."""
    image = change.image or {}
    expected = {field: image.get(field, ABSENT) for field in _touched(change)}
    expected.update(change.expected or {})
    if change.operation == "create":
        expected = {}
    return Write(
        change.address.key,
        cast(Any, change.operation),
        dict(change.values),
        tuple(change.unset),
        expected,
        token=change.fingerprint,
    )


def intent_payload(change: Change) -> dict[str, Any]:
    """Everything needed to settle a write later, even from another process."""
    return {
        "operation": change.operation,
        "values": change.values,
        "unset": list(change.unset),
        "expected": change.expected,
        "image": change.image,
        "inputs": change.inputs,
        "workflow": change.workflow,
        "workflow_version": change.workflow_version,
        "batch": change.batch,
        "actor": change.actor,
        "trigger": change.trigger,
        "sources": list(change.sources),
        "effective_at": change.effective_at,
        "compensates": list(change.compensates),
        "replays": list(change.replays),
    }


def _change_from_intent(intent: Intent) -> Change:
    payload = dict(intent.write)
    return Change(
        Address.parse(intent.address),
        payload.pop("operation"),
        values=payload.pop("values"),
        unset=tuple(payload.pop("unset")),
        sources=tuple(payload.pop("sources")),
        compensates=tuple(payload.pop("compensates", ())),
        replays=tuple(payload.pop("replays", ())),
        fingerprint=intent.fingerprint,
        **payload,
    )


def holds(change: Change, record: Record | None) -> bool:
    """Whether a record already shows the change (so a write that landed is not redone)."""
    if change.operation == "delete":
        return record is None
    if record is None:
        return False
    return all(same(record.get(f, ABSENT), v) for f, v in change.values.items()) and all(
        f not in record for f in change.unset
    )


def settle(
    ledger: Ledger,
    pairs: Sequence[tuple[Change, WriteResult]],
    declared: dict[str, Intent] | None = None,
) -> list[Outcome]:
    """Record what the writes did, in one ledger transaction with their intents' settlement.
    ``declared`` are the intents as just saved (read again only if an attempt fails)."""
    outcomes: list[Outcome | None] = [None] * len(pairs)
    applied: list[tuple[int | None, Change]] = []  # None: a move, recorded with its create
    for index, (change, result) in enumerate(pairs):
        name = str(change.address)
        landed = result.outcome == "stale" and holds(change, result.before)
        if result.outcome == "applied" and result.assigned_key is not None:
            applied.extend(_created_elsewhere(index, change, result.assigned_key))
        elif result.outcome == "applied" or landed:
            image = result.before if result.outcome == "applied" else change.image
            applied.append((index, change.evolve(image=image)))
        elif result.outcome == "stale":
            outcomes[index] = Outcome(
                name, "stale", field=result.field, expected=result.expected, actual=result.actual
            )
        elif result.outcome == "unknown":  # may have landed: left pending for `recover`
            outcomes[index] = Outcome(name, "pending", error=result.error)
        else:
            outcomes[index] = Outcome(name, "failed", error=result.error)
    unsettled = {i for i, outcome in enumerate(outcomes) if outcome and outcome.status == "pending"}

    fresh = [dict(declared or {})]

    def settlements() -> tuple[list[Any], dict[str, Any]]:
        known, fresh[0] = fresh[0], {}  # a second attempt reads the intents again
        intents = []
        for index, (change, _) in enumerate(pairs):
            if index in unsettled:
                continue
            fingerprint = cast(str, change.fingerprint)
            intent = known.get(fingerprint) or cast(
                Intent, ledger.repository.get(intent_id(fingerprint))
            )
            outcome = outcomes[index]
            if outcome is None:
                intent.settle("applied")
            else:
                intent.settle(outcome.status, field=outcome.field, error=outcome.error)
            intents.append(intent)
        settled = [c.fingerprint for i, (c, _) in enumerate(pairs) if i not in unsettled]
        return intents, {"pending_remove": settled}

    receipts = ledger.record_all([change for _, change in applied], settle=settlements)
    for (owner, _), receipt in zip(applied, receipts, strict=True):
        if owner is not None:
            result = pairs[owner][1]  # a field set on an applied result: an outside value found
            outcomes[owner] = Outcome(
                str(pairs[owner][0].address),
                "applied",
                receipt,
                field=result.field if result.outcome == "applied" else None,
                expected=result.expected,
                actual=result.actual,
            )
    return cast(list[Outcome], outcomes)


def _created_elsewhere(index: int, change: Change, key: str) -> list[tuple[int | None, Change]]:
    """A create the system stored under a key of its own choosing: the record is created at
    that key (carrying this change's fingerprint), and its requested key records the move, so
    history, point-in-time reads and later rollbacks of either address find the other."""
    moved = Address(change.address.system, change.address.collection, key)
    created = replace(change, address=moved, image=None, requested=str(change.address))
    marker = replace(
        change,
        operation=MOVE,
        values={},
        expected=None,
        image=None,
        moved_to=str(moved),
        fingerprint=f"{change.fingerprint}:moved",
    )
    return [(index, created), (None, marker)]


def recover(
    ledger: Ledger, adapters: dict[str, Adapter], *, batch: str | None = None
) -> list[Outcome]:
    """Settle every intent a crash left pending, by reading what its target holds now."""
    outcomes = []
    for fingerprint, _, system, collection, key in ledger.index.pending(batch):
        intent = cast(Intent, ledger.repository.get(intent_id(fingerprint)))
        change = _change_from_intent(intent)
        adapter = adapters.get(system)
        if adapter is None:
            raise InvalidChange(
                f"{change.address}: an unsettled write needs system {system!r} to be configured"
            )
        record = adapter.read(collection, [key])[key]
        if holds(change, record):
            result = WriteResult(key, "applied", change.image)
            outcomes.extend(settle(ledger, [(change, result)]))
        else:
            intent.settle("not_applied")
            ledger.save(intent, pending_remove=[fingerprint])
            outcomes.append(Outcome(str(change.address), "not_applied"))
    return outcomes
