"""Applying a plan: adoptions recorded into the ledger, corrections written compare-and-set.

The ``ledger`` policy writes through a `Run`, each write expecting exactly what the target held
when the plan was made (`PlanGuard`), so an edit made since is refused as stale, never
overwritten; the ``target`` policy adopts the drift into the ledger as observed changes (actor
``external``). Both are exactly once: fingerprints come from the plan id and the record's key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ledger.application import Ledger
from ledger.changes import Change
from ledger.domain import Address
from ledger.errors import BatchClosed, InvalidChange, NotFound
from ledger.lane_evidence import ReconciliationRecord
from ledger.lanes import LaneConfig
from ledger.ports import Adapter, Record, Relation, Write, WriteResult
from ledger.reconcile.compare import compare_in_scope
from ledger.reconcile.evidence import record_report
from ledger.reconcile.plans import Adoption, Correction, ReconcilePlan
from ledger.reconcile.report import DriftReport
from ledger.runs import Outcome, Run, Target
from ledger.values import ABSENT

ADOPT_CHUNK = 10_000
LANDED = ("applied", "already_applied", "adopted", "already_adopted")


@dataclass(frozen=True)
class ReconcileResult:
    """What applying a plan did to each record, and the comparison made again afterwards.
    Statuses: applied / already_applied (corrections), adopted / already_adopted (adoptions),
    stale (the target or the ledger moved since the plan), failed (the target refused)."""

    plan: ReconcilePlan
    outcomes: tuple[Outcome, ...]
    verification: DriftReport
    recorded: ReconciliationRecord | None = None  # the verification, as lane evidence

    @property
    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(outcome.status for outcome in self.outcomes).items()))

    @property
    def refused(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.status in ("stale", "failed"))

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan.id,
            "batch": self.plan.batch,
            "counts": self.counts,
            "refused": [o.to_json() for o in self.refused],
            "skipped": [s.to_json() for s in self.plan.skipped],
            "verification": self.verification.to_json(),
            "recorded": None if self.recorded is None else self.recorded.to_json(),
        }


def apply_reconciliation(
    ledger: Ledger,
    adapter: Adapter,
    plan: ReconcilePlan,
    *,
    actor: str = "reconcile",
    lanes: Mapping[str, LaneConfig] | None = None,
) -> ReconcileResult:
    """Apply a plan exactly once — adoptions recorded into the ledger, then corrections written
    compare-and-set through a run — then compare again. A record the ledger recorded a newer
    action on since the plan was made is left alone (stale). Applying it again changes nothing.
    The comparison made again is recorded as a reconciliation by ``actor`` (`record_report`):
    a clean one after repairs is what a lane's ``reconciled`` re-enable rule asks for.

    Adoptions go first: a correction's run also records the outside edit it overwrites (an
    observed action, not the plan's own), which must not make a later step of the same record
    look moved when an interrupted apply is resumed."""
    if adapter.system != plan.system:
        raise InvalidChange(f"plan {plan.id} is for system {plan.system!r}, not {adapter.system!r}")
    done = ledger.index.find_fingerprints(
        [plan.fingerprint("correct", c.key) for c in plan.corrections]
        + [plan.fingerprint("adopt", a.key) for a in plan.adoptions]
    )
    _refuse_a_closed_plan(ledger, plan, len(done))
    moved = _moved_in_ledger(ledger, plan, set(done))
    outcomes: list[Outcome] = []
    adoptions = []
    for adoption in plan.adoptions:
        if adoption.key in moved and plan.fingerprint("adopt", adoption.key) not in done:
            outcomes.append(_moved(plan, adoption.key))
        else:
            adoptions.append(_adoption_change(plan, adoption))
    for start in range(0, len(adoptions), ADOPT_CHUNK):
        chunk = adoptions[start : start + ADOPT_CHUNK]
        receipts = ledger.record_all(chunk, batch=plan.batch, workflow="reconcile")
        outcomes += [
            Outcome(str(c.address), "already_adopted" if r.duplicate else "adopted", r)
            for c, r in zip(chunk, receipts, strict=True)
        ]
    corrections = []
    for correction in plan.corrections:
        if correction.key in moved and plan.fingerprint("correct", correction.key) not in done:
            outcomes.append(_moved(plan, correction.key))
        else:
            corrections.append(correction)
    if corrections:
        guarded = PlanGuard(adapter, {c.key: c for c in corrections})
        run = Run(ledger, plan.batch, workflow="reconcile", actor="reconcile", trigger="reconcile")
        outcomes += run.apply(
            Target(guarded, plan.collection), [_correction_change(plan, c) for c in corrections]
        )
    if outcomes and all(o.status in LANDED for o in outcomes):
        ledger.close_batch(plan.batch)
    verification = DriftReport.of(compare_in_scope(ledger, adapter, plan.collection, plan.scope))
    recorded = record_report(ledger, verification, plan.scope, actor=actor, lanes=lanes)
    return ReconcileResult(plan, tuple(outcomes), verification, recorded)


def _refuse_a_closed_plan(ledger: Ledger, plan: ReconcilePlan, recorded: int) -> None:
    """A plan's batch is closed once all of it landed; recording more into it would fail only
    after the write reached the target, so refuse before writing anything."""
    try:
        closed = ledger.batch_view(plan.batch).status == "closed"
    except NotFound:
        return
    if closed and recorded < len(plan.corrections) + len(plan.adoptions):
        raise BatchClosed(
            f"plan {plan.id} was applied and its batch {plan.batch} closed, but some of it is "
            "not recorded; make a new plan"
        )


def _moved_in_ledger(ledger: Ledger, plan: ReconcilePlan, mine: set[str]) -> set[str]:
    """Keys of the collection changed in the ledger since the plan (by anything but it)."""
    prefix = f"{plan.system}/{plan.collection}/"
    changed = ledger.changed_since(
        plan.position, excluding=mine, system=plan.system, collection=plan.collection
    )
    return {record.removeprefix(prefix) for record in changed}


def _moved(plan: ReconcilePlan, key: str) -> Outcome:
    return Outcome(
        f"{plan.system}/{plan.collection}/{key}",
        "stale",
        field="(ledger)",
        error="the ledger recorded a newer action on this record since the plan was made",
    )


def _adoption_change(plan: ReconcilePlan, adoption: Adoption) -> Change:
    before = {f: v for f, v in adoption.before.items() if v is not ABSENT}
    return Change(
        Address(plan.system, plan.collection, adoption.key),
        adoption.operation,
        values=dict(adoption.values),
        unset=adoption.unset,
        before=before or None,
        actor="external",
        trigger="observed",
        effective_at=plan.observed_at,
        fingerprint=plan.fingerprint("adopt", adoption.key),
    )


def _correction_change(plan: ReconcilePlan, correction: Correction) -> Change:
    return Change(
        Address(plan.system, plan.collection, correction.key),
        correction.operation,
        values=dict(correction.values),
        unset=correction.unset,
        inputs={"plan": plan.id},
        fingerprint=plan.fingerprint("correct", correction.key),
    )


class PlanGuard:
    """The target's adapter, with every write also expecting exactly what the plan saw.

    A run's write expects the values it read just before writing; a correction must also
    expect the values the plan was made from (ABSENT included, which a `Change` cannot carry),
    so that an edit landing between plan and apply is refused under the target's own lock."""

    def __init__(self, adapter: Adapter, corrections: dict[str, Correction]):
        self.adapter = adapter
        self.system = adapter.system
        self.corrections = corrections

    def read(self, collection: str, keys: Sequence[str]) -> dict[str, Record | None]:
        return self.adapter.read(collection, keys)

    def scan(self, collection: str) -> Iterator[tuple[str, Record]]:
        return self.adapter.scan(collection)

    def write(self, collection: str, writes: Sequence[Write]) -> list[WriteResult]:
        return self.adapter.write(collection, [self._guarded(write) for write in writes])

    def normalize(self, collection: str, values: Record) -> Record:
        return self.adapter.normalize(collection, values)

    def assigns_keys(self, collection: str) -> bool:
        return self.adapter.assigns_keys(collection)

    def relations(self, collection: str) -> tuple[Relation, ...]:
        return self.adapter.relations(collection)

    def _guarded(self, write: Write) -> Write:
        correction = self.corrections.get(write.key)
        if correction is None:
            return write
        expected = {**write.expected, **correction.expected}
        if write.operation == "delete":  # the whole record, as the plan saw it
            expected.update({f: ABSENT for f in write.expected if f not in correction.expected})
        return replace(write, expected=expected)

    def close(self) -> None:
        self.adapter.close()
