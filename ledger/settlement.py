"""Settling writes: what a write through an adapter did becomes an action, exactly once.

A run (`ledger.runs`) declares an intent for each write, writes compare-and-set, then settles
here: the writes that landed become actions carrying the exact before-image, in one ledger
transaction with their intents' settlement; refused ones are settled as stale or failed. A
crash between declaring and settling leaves intents pending; `recover` reads the target to
settle each as applied or not applied (docs/reliability.md lists the failure cases).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

from eventsourcing.domain import Aggregate

from ledger.application import Ledger
from ledger.changes import Change
from ledger.domain import MOVE, Address, Intent, intent_id
from ledger.encoding import encode_value
from ledger.errors import BeforeMismatch, InvalidChange
from ledger.ports import Adapter, Write, WriteResult, holds
from ledger.store import PendingIntent, SaveContext
from ledger.values import ABSENT, same
from ledger.views import Receipt

OutcomeStatus = Literal[
    "applied",
    "already_applied",
    "stale",  # refused: the record no longer holds what the change expected
    "failed",
    "not_applied",  # found by `recover`: a write a crash left pending did not land
    "pending",  # the write's outcome is unknown; `recover` settles it
    "adopted",  # reconciliation: an outside value recorded as the ledger's
    "already_adopted",
]


@dataclass(frozen=True)
class Outcome:
    """What happened to one change in a run."""

    entity: str
    status: OutcomeStatus
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


def _touched(change: Change) -> list[str]:
    if change.operation == "delete":
        return sorted(change.image or {})
    return [*change.values, *change.unset]


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


def stale_before_writing(change: Change) -> Outcome | None:
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


def refusal(change: Change, error: InvalidChange) -> Outcome:
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

    def settlements() -> tuple[list[Aggregate], SaveContext]:
        known, fresh[0] = fresh[0], {}  # a second attempt reads the intents again
        intents: list[Aggregate] = []
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
        settled = [cast(str, c.fingerprint) for i, (c, _) in enumerate(pairs) if i not in unsettled]
        return intents, SaveContext(settled=settled)

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


RECOVER_CHUNK = 500
"""Unsettled writes settled per round: their intents read in one query, their targets in one
read per collection, their settlements in (at most) two ledger transactions."""


def recover(
    ledger: Ledger, adapters: dict[str, Adapter], *, batch: str | None = None
) -> list[Outcome]:
    """Settle every intent a crash left pending, by reading what its target holds now.

    In rounds of `RECOVER_CHUNK` (in fingerprint order, as they are listed): the writes that
    landed are recorded as actions in one transaction with their intents' settlement
    (`settle`), the others settled as not applied in another. Every system is checked before
    anything is settled, so a missing one changes nothing."""
    pending = ledger.index.pending(batch)
    for item in pending:
        if item.system not in adapters:
            raise InvalidChange(
                f"{item.system}/{item.collection}/{item.key}: an unsettled write needs system "
                f"{item.system!r} to be configured"
            )
    outcomes: list[Outcome] = []
    for start in range(0, len(pending), RECOVER_CHUNK):
        outcomes.extend(_recover_round(ledger, adapters, pending[start : start + RECOVER_CHUNK]))
    return outcomes


def _recover_round(
    ledger: Ledger, adapters: dict[str, Adapter], pending: Sequence[PendingIntent]
) -> list[Outcome]:
    loaded = ledger._load_entities([intent_id(item.fingerprint) for item in pending])
    intents = [cast(Intent, loaded[intent_id(item.fingerprint)]) for item in pending]
    changes = [_change_from_intent(intent) for intent in intents]
    keys: dict[tuple[str, str], list[str]] = {}
    for item in pending:
        keys.setdefault((item.system, item.collection), []).append(item.key)
    records = {
        (system, collection, key): record
        for (system, collection), wanted in keys.items()
        for key, record in adapters[system].read(collection, list(dict.fromkeys(wanted))).items()
    }
    landed: list[int] = []
    missed: list[int] = []
    for index, (item, change) in enumerate(zip(pending, changes, strict=True)):
        record = records[(item.system, item.collection, item.key)]
        (landed if holds(change, record) else missed).append(index)
    outcomes: dict[int, Outcome] = {}
    if landed:
        pairs = [
            (changes[i], WriteResult(pending[i].key, "applied", changes[i].image)) for i in landed
        ]
        declared = {pending[i].fingerprint: intents[i] for i in landed}
        outcomes.update(zip(landed, settle(ledger, pairs, declared), strict=True))
    if missed:
        for index in missed:
            intents[index].settle("not_applied")
            outcomes[index] = Outcome(str(changes[index].address), "not_applied")
        ledger.save(
            *(intents[i] for i in missed),
            context=SaveContext(settled=[pending[i].fingerprint for i in missed]),
        )
    return [outcomes[i] for i in range(len(pending))]
