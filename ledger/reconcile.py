"""Reconciliation: find drift between the ledger and a target system, and correct it minimally.

``compare`` merges two streams in key order, so memory does not grow with the collection:
the ledger's projection of a collection (now or at a point), folded from its actions page by
page, and the adapter's ``scan``. Each record is in one of three states of drift:

- ``missing_in_target``: the ledger says it exists; the target does not have it;
- ``unknown_to_ledger``: the target has it; the ledger never saw it, or saw it deleted;
- ``fields``: both have it, and fields differ (by `same`: ``1``, ``1.0`` and ``"1"`` differ).

Which fields are compared. The ledger knows the fields its actions touched: all fields a
create set, and every field an update set or unset (an unset one is known to be absent). A
field no action ever touched (a column the automation never wrote, filled by the target) is
outside its knowledge and is not compared, unless ``all_fields``. A field the ledger knows to
be absent and the target holds as null is drift (``(ABSENT, None)``); ``null_is_absent``
treats the two as the same, for SQL targets, where a column cannot be absent.

Corrections are plans first (frozen data, ``to_json``), then applied: the ``ledger`` policy
writes compare-and-set through a `Run` (each write expects exactly what the target held when
the plan was made, so an edit made since is refused as stale, never overwritten); the
``target`` policy adopts the drift into the ledger as observed changes (actor ``external``).
Both are exactly once: fingerprints come from the plan id and the record's key.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
from eventsourcing.persistence import StoredEvent

from ledger.application import Ledger
from ledger.changes import Change
from ledger.domain import TRACK, Address, Entity, fold
from ledger.encoding import encode_value
from ledger.errors import BatchClosed, InvalidChange, NotFound
from ledger.keys import in_key_order, merge_by_key
from ledger.points import Point
from ledger.ports import Adapter, Record, Relation, Write, WriteResult
from ledger.runs import Outcome, Run, Target
from ledger.store import Cutoff
from ledger.transcoder import OrjsonTranscoder
from ledger.values import ABSENT, same

KINDS = ("missing_in_target", "unknown_to_ledger", "fields", "before_differs")
POLICIES = ("ledger", "target")
PAGE_SIZE = 5000
ADOPT_CHUNK = 10_000
SAMPLES = 20
PLAN_FORMAT = "changeledger-reconcile-plan/1"
_CODEC = OrjsonTranscoder()


# Comparing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    """One record that differs: ``fields`` maps a field to ``(ledger, target)``, ABSENT where
    a side lacks it. ``ledger_version`` is 0 for a record the ledger never saw."""

    key: str
    kind: str
    fields: dict[str, tuple[Any, Any]]
    ledger_version: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "ledger_version": self.ledger_version,
            # A side that lacks the field is left out: {"note": {"target": null}} is
            # "absent in the ledger, null in the target".
            "fields": {
                name: {
                    side: encode_value(value)
                    for side, value in (("ledger", ours), ("target", theirs))
                    if value is not ABSENT
                }
                for name, (ours, theirs) in self.fields.items()
            },
        }


@dataclass(frozen=True)
class Scope:
    """What a comparison looks at; a plan keeps it, so its verification looks the same way."""

    at: Point | None = None
    tracked_only: bool = False
    all_fields: bool = False
    null_is_absent: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "at": str(self.at) if self.at else None,
            "tracked_only": self.tracked_only,
            "all_fields": self.all_fields,
            "null_is_absent": self.null_is_absent,
        }


@dataclass
class _Known:
    """One side's account of a record: its fields, which fields it vouches for (``known``, or
    every field when ``complete``), and drift found while folding it (``notes``)."""

    key: str
    exists: bool = False
    fields: dict[str, Any] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)
    version: int = 0
    complete: bool = False
    notes: list[Drift] = field(default_factory=list)


class Comparison(Iterator[Drift]):
    """The drift of one collection, streamed; counts the records each side held as it goes."""

    def __init__(self, system: str, collection: str, label: str | None, drifts: Iterator[Drift]):
        self.system = system
        self.collection = collection
        self.label = label
        self.sides: Counter[str] = Counter()
        self._drifts = drifts

    def __next__(self) -> Drift:
        return next(self._drifts)


def compare(
    ledger: Ledger,
    adapter: Adapter,
    collection: str,
    at: Point | None = None,
    *,
    tracked_only: bool = False,
    all_fields: bool = False,
    null_is_absent: bool = False,
) -> Comparison:
    """Every drifted record of a collection between the ledger (now, or ``at``) and the target,
    in key order; ``tracked_only`` leaves out target records the ledger never saw."""
    scope = Scope(at, tracked_only, all_fields, null_is_absent)
    return _compare(ledger, adapter, collection, scope)


def _compare(
    ledger: Ledger, adapter: Adapter, collection: str, scope: Scope, position: int | None = None
) -> Comparison:
    """The comparison; ``position``: the end of the log to read the ledger at, when no ``at``."""
    if scope.at is not None and scope.at.kind == "version":
        raise InvalidChange("a collection has no version; use a time or a checkpoint", field="--at")
    if position is None:
        position = ledger.recorder.max_notification_id() or 0
    cutoff = ledger.cutoff(scope.at) or Cutoff("position", position)
    label = str(scope.at) if scope.at else None
    comparison = Comparison(adapter.system, collection, label, iter(()))
    projection = _projection(ledger, adapter.system, collection, cutoff)
    target = in_key_order(adapter.scan(collection), f"{adapter.system}/{collection}")
    comparison._drifts = _drifts(_merge(projection, target), comparison.sides, scope)
    return comparison


def _drifts(
    pairs: Iterator[tuple[str, _Known | None, Record | None]],
    sides: Counter[str],
    scope: Scope,
) -> Iterator[Drift]:
    for key, ours, theirs in pairs:
        if ours is not None:
            yield from ours.notes
        exists = ours is not None and ours.exists
        sides["ledger"] += exists
        sides["target"] += theirs is not None
        if exists and theirs is None:
            known = cast(_Known, ours)
            yield Drift(
                key,
                "missing_in_target",
                {f: (v, ABSENT) for f, v in known.fields.items()},
                known.version,
            )
        elif theirs is not None and not exists:
            if ours is None and scope.tracked_only:
                continue
            yield Drift(
                key,
                "unknown_to_ledger",
                {f: (ABSENT, v) for f, v in theirs.items()},
                ours.version if ours is not None else 0,
            )
        elif exists and theirs is not None:
            known = cast(_Known, ours)
            whole = scope.all_fields or known.complete
            names = set(known.fields) | set(theirs) if whole else known.known
            differing = _differing(known.fields, theirs, names, scope.null_is_absent)
            if differing:
                yield Drift(key, "fields", differing, known.version)


def _differing(
    ours: Mapping[str, Any], theirs: Mapping[str, Any], names: Iterable[str], null_is_absent: bool
) -> dict[str, tuple[Any, Any]]:
    differing = {}
    for name in names:
        a, b = ours.get(name, ABSENT), theirs.get(name, ABSENT)
        if same(a, b) or (null_is_absent and _nothing(a) and _nothing(b)):
            continue
        differing[name] = (a, b)
    return {name: differing[name] for name in sorted(differing)} if differing else differing


def _nothing(value: Any) -> bool:
    return value is None or value is ABSENT


def _actions(
    ledger: Ledger, system: str, collection: str, cutoff: Cutoff
) -> Iterator[tuple[str, int, Entity.Action]]:
    """Every action of a collection within the cutoff, in (key, version) order, page by page."""
    after: tuple[str, int] | None = None
    while True:
        page = ledger.index.collection_page(system, collection, cutoff, after, PAGE_SIZE)
        for row in page:
            stored = StoredEvent(row.entity_id, row.version, row.topic, row.state)
            yield row.key, row.position, cast(Entity.Action, ledger.mapper.to_domain_event(stored))
        if len(page) < PAGE_SIZE:
            return
        after = (page[-1].key, page[-1].version)


def _projection(ledger: Ledger, system: str, collection: str, cutoff: Cutoff) -> Iterator[_Known]:
    """The ledger's knowledge of each record that has actions within the cutoff, in key order."""
    for key, rows in itertools.groupby(
        ledger.collection_actions(system, collection, cutoff), key=lambda row: row[0]
    ):
        state = _Known(key)
        for _, version, _, _, operation, before, after in rows:
            state.fields, state.exists = fold(state.fields, operation, before, after)
            if operation in ("create", TRACK):
                state.known = set(after)
            elif operation == "delete":
                state.known = set()
            else:
                state.known |= before.keys() | after.keys()
            state.version = version
        yield state


def _merge(
    ours: Iterator[_Known], theirs: Iterator[tuple[str, Record]]
) -> Iterator[tuple[str, _Known | None, Record | None]]:
    """Pairs of (key, the ledger's record, the target's record) from two key-ordered streams."""
    for key, known, record in merge_by_key(ours, theirs, _known_key, _record_key):
        yield key, known, None if record is None else record[1]


def _known_key(known: _Known) -> str:
    return known.key


def _record_key(record: tuple[str, Record]) -> str:
    return record[0]


# Reports --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """Counts of drift per kind and per field, and the first few drifted records."""

    system: str
    collection: str
    at: str | None
    ledger_records: int
    target_records: int
    counts: dict[str, int]
    field_counts: dict[str, int]
    samples: tuple[Drift, ...]

    @classmethod
    def of(cls, comparison: Comparison, samples: int = SAMPLES) -> Report:
        """Run a comparison to its end, keeping only counts and the first ``samples`` drifts."""
        counts: Counter[str] = Counter()
        fields: Counter[str] = Counter()
        kept: list[Drift] = []
        for drift in comparison:
            counts[drift.kind] += 1
            if drift.kind == "fields":
                fields.update(drift.fields.keys())
            if len(kept) < samples:
                kept.append(drift)
        return cls(
            comparison.system,
            comparison.collection,
            comparison.label,
            comparison.sides["ledger"],
            comparison.sides["target"],
            {kind: counts[kind] for kind in KINDS if counts[kind]},
            dict(sorted(fields.items())),
            tuple(kept),
        )

    @property
    def drifted(self) -> int:
        return sum(self.counts.values())

    @property
    def clean(self) -> bool:
        return self.drifted == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "collection": self.collection,
            "at": self.at,
            "clean": self.clean,
            "ledger_records": self.ledger_records,
            "target_records": self.target_records,
            "drifted": self.drifted,
            "counts": self.counts,
            "field_counts": self.field_counts,
            "samples": [drift.to_json() for drift in self.samples],
            "samples_truncated": self.drifted > len(self.samples),
        }


# Plans ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Correction:
    """A write to the target that makes it hold the ledger's values, and nothing more.
    ``expected``: what the target held when the plan was made (ABSENT: no such field)."""

    key: str
    operation: str  # "create", "update" or "delete"
    values: dict[str, Any]
    unset: tuple[str, ...]
    expected: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "operation": self.operation,
            "set": encode_value(self.values),
            "unset": list(self.unset),
            "expected": {f: encode_value(v) for f, v in self.expected.items() if v is not ABSENT},
            "expected_absent": sorted(f for f, v in self.expected.items() if v is ABSENT),
        }


@dataclass(frozen=True)
class Adoption:
    """An outside edit recorded into the ledger as observed (the target's values win).
    ``before``: what the ledger held when the plan was made (ABSENT: no such field)."""

    key: str
    operation: str
    values: dict[str, Any]
    unset: tuple[str, ...]
    before: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "operation": self.operation,
            "set": encode_value(self.values),
            "unset": list(self.unset),
            "before": {f: encode_value(v) for f, v in self.before.items() if v is not ABSENT},
        }


@dataclass(frozen=True)
class Skipped:
    """A drifted record the plan leaves alone, and why."""

    key: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "reason": self.reason}


@dataclass(frozen=True)
class ReconcilePlan:
    """What reconciling a collection would do: corrections to the target, adoptions into the
    ledger, records left alone. Its id hashes its content and the ledger position it was made
    at, so the same plan applied twice (or by two processes) acts once."""

    id: str
    system: str
    collection: str
    policy: str
    field_rules: tuple[tuple[str, str], ...]
    delete_unknown: bool
    scope: Scope
    position: int
    observed_at: datetime
    corrections: tuple[Correction, ...]
    adoptions: tuple[Adoption, ...]
    skipped: tuple[Skipped, ...]
    report: Report

    @property
    def batch(self) -> str:
        return f"reconcile-{self.id}"

    @property
    def empty(self) -> bool:
        return not self.corrections and not self.adoptions

    def fingerprint(self, step: str, key: str) -> str:
        return f"reconcile:{self.id}:{step}:{key}"

    def content_id(self) -> str:
        """A hash of what the plan does and the ledger position it was made at."""
        content = {
            "system": self.system,
            "collection": self.collection,
            "policy": self.policy,
            "field_rules": self.field_rules,
            "delete_unknown": self.delete_unknown,
            "scope": asdict(self.scope),
            "position": self.position,
            "corrections": [asdict(c) for c in self.corrections],
            "adoptions": [asdict(a) for a in self.adoptions],
        }
        return hashlib.sha256(_CODEC.encode(content)).hexdigest()[:16]

    def dumps(self) -> bytes:
        """The plan saved exactly (typed values and absent fields kept), to apply later."""
        return _CODEC.encode({"format": PLAN_FORMAT, **asdict(self)})

    @classmethod
    def loads(cls, data: bytes) -> ReconcilePlan:
        """A saved plan; refused if it is not one, or if it was altered since it was made."""
        try:
            raw = _CODEC.decode(data)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            raw = None
        if not isinstance(raw, dict) or raw.pop("format", None) != PLAN_FORMAT:
            raise InvalidChange("not a plan saved by `ledger reconcile --plan --out`")
        scope, summary = raw["scope"], raw["report"]
        made = cls(
            **{
                **raw,
                "scope": Scope(**{**scope, "at": Point(**scope["at"]) if scope["at"] else None}),
                "corrections": tuple(Correction(**c) for c in raw["corrections"]),
                "adoptions": tuple(Adoption(**a) for a in raw["adoptions"]),
                "skipped": tuple(Skipped(**k) for k in raw["skipped"]),
                "report": Report(
                    **{**summary, "samples": tuple(Drift(**d) for d in summary["samples"])}
                ),
            }
        )
        if made.content_id() != made.id:
            raise InvalidChange(f"plan {made.id} was altered after it was made; plan again")
        return made

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.id,
            "batch": self.batch,
            "system": self.system,
            "collection": self.collection,
            "policy": self.policy,
            "field_rules": dict(self.field_rules),
            "delete_unknown": self.delete_unknown,
            "scope": self.scope.to_json(),
            "position": self.position,
            "observed_at": self.observed_at.isoformat(),
            "corrections": [c.to_json() for c in self.corrections],
            "adoptions": [a.to_json() for a in self.adoptions],
            "skipped": [s.to_json() for s in self.skipped],
            "report": self.report.to_json(),
        }


def parse_field_rules(items: Iterable[str]) -> dict[str, str]:
    """``FIELD=ledger`` or ``FIELD=target``: which side wins for that field."""
    rules: dict[str, str] = {}
    for item in items:
        name, sep, side = item.partition("=")
        if not sep or not name or side not in POLICIES:
            raise InvalidChange(
                f"--field-rule {item!r} must look like FIELD=ledger or FIELD=target",
                field="--field-rule",
            )
        if name in rules:
            raise InvalidChange(f"--field-rule names field {name!r} twice", field="--field-rule")
        rules[name] = side
    return rules


def plan(
    ledger: Ledger,
    adapter: Adapter,
    collection: str,
    policy: str,
    at: Point | None = None,
    *,
    field_rules: Mapping[str, str] | None = None,
    delete_unknown: bool = False,
    tracked_only: bool = False,
    all_fields: bool = False,
    null_is_absent: bool = False,
    samples: int = SAMPLES,
) -> ReconcilePlan:
    """Compare, then decide per drifted record (and per field, by ``field_rules``) which side
    wins. A record unknown to the ledger is deleted from the target only with
    ``delete_unknown``: it may be someone's new record, not a mistake."""
    if policy not in POLICIES:
        raise InvalidChange(f"policy {policy!r} is not one of {', '.join(POLICIES)}")
    rules = dict(field_rules or {})
    parse_field_rules(f"{name}={side}" for name, side in rules.items())
    if at is not None and "target" in (policy, *rules.values()):
        raise InvalidChange(
            "adopting the target's values records them now, so it compares against the "
            "ledger as it is now: drop --at, or use --policy ledger without target field rules",
            field="--at",
        )
    scope = Scope(at, tracked_only, all_fields, null_is_absent)
    position = ledger.recorder.max_notification_id() or 0
    observed_at = datetime.now(UTC)
    corrections: list[Correction] = []
    adoptions: list[Adoption] = []
    skipped: list[Skipped] = []

    def decide(drift: Drift) -> Drift:
        _decide(drift, policy, rules, delete_unknown, corrections, adoptions, skipped)
        return drift

    comparison = _compare(ledger, adapter, collection, scope, position)
    comparison._drifts = map(decide, comparison._drifts)
    summary = Report.of(comparison, samples)
    made = ReconcilePlan(
        id="",
        system=adapter.system,
        collection=collection,
        policy=policy,
        field_rules=tuple(sorted(rules.items())),
        delete_unknown=delete_unknown,
        scope=scope,
        position=position,
        observed_at=observed_at,
        corrections=tuple(corrections),
        adoptions=tuple(adoptions),
        skipped=tuple(skipped),
        report=summary,
    )
    return replace(made, id=made.content_id())


def _decide(
    drift: Drift,
    policy: str,
    rules: dict[str, str],
    delete_unknown: bool,
    corrections: list[Correction],
    adoptions: list[Adoption],
    skipped: list[Skipped],
) -> None:
    ours = {f: a for f, (a, _) in drift.fields.items() if a is not ABSENT}
    theirs = {f: b for f, (_, b) in drift.fields.items() if b is not ABSENT}
    if drift.kind == "missing_in_target":
        if policy == "ledger":
            corrections.append(Correction(drift.key, "create", ours, (), {}))
        else:
            adoptions.append(Adoption(drift.key, "delete", {}, (), ours))
    elif drift.kind == "unknown_to_ledger":
        if policy == "target":
            adoptions.append(Adoption(drift.key, "create", theirs, (), {}))
        elif delete_unknown:
            corrections.append(Correction(drift.key, "delete", {}, (), dict(theirs)))
        else:
            skipped.append(
                Skipped(
                    drift.key,
                    "unknown to the ledger: left in place (--delete-unknown deletes it, "
                    "--policy target adopts it)",
                )
            )
    else:
        to_target = [f for f in drift.fields if rules.get(f, policy) == "ledger"]
        to_ledger = [f for f in drift.fields if rules.get(f, policy) == "target"]
        if to_target:
            corrections.append(
                Correction(
                    drift.key,
                    "update",
                    {f: ours[f] for f in to_target if f in ours},
                    tuple(f for f in to_target if f not in ours),
                    {f: drift.fields[f][1] for f in to_target},
                )
            )
        if to_ledger:
            adoptions.append(
                Adoption(
                    drift.key,
                    "update",
                    {f: theirs[f] for f in to_ledger if f in theirs},
                    tuple(f for f in to_ledger if f not in theirs),
                    {f: drift.fields[f][0] for f in to_ledger},
                )
            )


# Applying -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyResult:
    """What applying a plan did to each record, and the comparison made again afterwards.
    Statuses: applied / already_applied (corrections), adopted / already_adopted (adoptions),
    stale (the target or the ledger moved since the plan), failed (the target refused)."""

    plan: ReconcilePlan
    outcomes: tuple[Outcome, ...]
    verification: Report

    @property
    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(outcome.status for outcome in self.outcomes).items()))

    @property
    def refused(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in ("stale", "failed")]

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan.id,
            "batch": self.plan.batch,
            "counts": self.counts,
            "refused": [o.to_json() for o in self.refused],
            "skipped": [s.to_json() for s in self.plan.skipped],
            "verification": self.verification.to_json(),
        }


def apply(ledger: Ledger, adapter: Adapter, plan: ReconcilePlan) -> ApplyResult:
    """Apply a plan exactly once — adoptions recorded into the ledger, then corrections written
    compare-and-set through a run — then compare again. A record the ledger recorded a newer
    action on since the plan was made is left alone (stale). Applying it again changes nothing.

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
        guarded = _PlanGuard(adapter, {c.key: c for c in corrections})
        run = Run(ledger, plan.batch, workflow="reconcile", actor="reconcile", trigger="reconcile")
        outcomes += run.apply(
            Target(guarded, plan.collection), [_correction_change(plan, c) for c in corrections]
        )
    landed = ("applied", "already_applied", "adopted", "already_adopted")
    if outcomes and all(o.status in landed for o in outcomes):
        ledger.close_batch(plan.batch)
    verification = Report.of(_compare(ledger, adapter, plan.collection, plan.scope))
    return ApplyResult(plan, tuple(outcomes), verification)


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
    """Keys of the collection with an action recorded after the plan (other than its own)."""
    rows = ledger.index.actions_matching(
        after_position=plan.position, system=plan.system, collection=plan.collection
    )
    return {key for _, _, _, fingerprint, _, _, key in rows if fingerprint not in mine}


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


class _PlanGuard:
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


# Baselines ------------------------------------------------------------------------------

BASELINE_FORMAT = "changeledger-baseline/1"


@dataclass(frozen=True)
class Baseline:
    """A snapshot of a collection as the target held it, and the ledger position it was taken at."""

    path: Path
    system: str
    collection: str
    position: int
    captured_at: datetime
    records: int

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline": str(self.path),
            "system": self.system,
            "collection": self.collection,
            "position": self.position,
            "captured_at": self.captured_at.isoformat(),
            "records": self.records,
        }


def capture_baseline(
    ledger: Ledger, adapter: Adapter, collection: str, path: str | os.PathLike[str]
) -> Baseline:
    """Stream the target's collection into a JSON Lines file (values exactly, in key order),
    headed by the ledger's position: take it before a batch, while nothing else writes."""
    path = Path(path)
    position = ledger.recorder.max_notification_id() or 0
    captured_at = datetime.now(UTC)
    header = {
        "format": BASELINE_FORMAT,
        "system": adapter.system,
        "collection": collection,
        "position": position,
        "captured_at": captured_at.isoformat(),
    }
    partial = path.with_name(path.name + ".partial")
    count = 0
    try:
        with partial.open("wb") as out:
            out.write(orjson.dumps(header) + b"\n")
            for key, record in in_key_order(
                adapter.scan(collection), f"{adapter.system}/{collection}"
            ):
                out.write(_CODEC.encode([key, record]) + b"\n")
                count += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return Baseline(path, adapter.system, collection, position, captured_at, count)


def compare_baseline(
    ledger: Ledger,
    adapter: Adapter,
    path: str | os.PathLike[str],
    *,
    batch: str | None = None,
    null_is_absent: bool = False,
) -> Comparison:
    """The target now against the baseline with the actions recorded since applied (only
    ``batch``'s, if given): anything the actions do not explain is drift. The ``ledger`` side
    of each field is what the baseline and the actions predict. ``before_differs``: an action
    started from values the prediction did not hold — an unrecorded edit came first."""
    header, records = _read_baseline(Path(path))
    system, collection = header["system"], header["collection"]
    if system != adapter.system:
        raise InvalidChange(f"{path} is a baseline of system {system!r}, not {adapter.system!r}")
    position = int(header["position"])
    cutoff = Cutoff("position", ledger.recorder.max_notification_id() or 0)
    since = (
        (key, event)
        for key, at, event in _actions(ledger, system, collection, cutoff)
        if at > position and (batch is None or event.batch == batch)
    )
    comparison = Comparison(system, collection, f"baseline:{header['captured_at']}", iter(()))
    target = in_key_order(adapter.scan(collection), f"{system}/{collection}")
    predicted = _predict(records, since)
    scope = Scope(null_is_absent=null_is_absent)
    comparison._drifts = _drifts(_merge(predicted, target), comparison.sides, scope)
    return comparison


def _read_baseline(path: Path) -> tuple[dict[str, Any], Iterator[tuple[str, Record]]]:
    """The header now; the records streamed when read."""
    try:
        with path.open("rb") as lines:
            first = lines.readline()
    except OSError as error:
        raise NotFound(f"cannot read baseline {path}: {error.strerror}") from None
    try:
        header = orjson.loads(first or b"null")
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != BASELINE_FORMAT:
        raise InvalidChange(f"{path} is not a baseline written by `ledger reconcile`")

    def records() -> Iterator[tuple[str, Record]]:
        with path.open("rb") as lines:
            lines.readline()
            for line in lines:
                key, record = _CODEC.decode(line)
                yield key, record

    return header, in_key_order(records(), str(path))


def _predict(
    baseline: Iterator[tuple[str, Record]], actions: Iterator[tuple[str, Entity.Action]]
) -> Iterator[_Known]:
    """Each record as the baseline and the actions since predict it, in key order. A baseline
    record is known whole; one created since, by the fields its actions touched."""
    grouped = (
        (key, [event for _, event in rows])
        for key, rows in itertools.groupby(actions, key=lambda row: row[0])
    )
    records = (_Known(key, True, record, complete=True) for key, record in baseline)
    a, b = next(records, None), next(grouped, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a.key < b[0]):
            yield cast(_Known, a)
            a = next(records, None)
            continue
        if a is None or b[0] < a.key:
            state = _Known(b[0])
        else:
            state, a = a, next(records, None)
        for event in b[1]:
            surprise = _before_differs(state, event)
            if surprise:
                state.notes.append(
                    Drift(state.key, "before_differs", surprise, event.originator_version)
                )
            state.fields, state.exists = fold(
                state.fields, event.operation, event.before, event.after
            )
            if event.operation == "create":
                state.known, state.complete = set(event.after), False
            else:
                state.known |= event.before.keys() | event.after.keys()
            state.version = event.originator_version
        b = next(grouped, None)
        yield state


def _before_differs(state: _Known, event: Entity.Action) -> dict[str, tuple[Any, Any]]:
    """Where an action's before-values (or the record's existence) are not what was predicted."""
    if event.operation == "create" and state.exists:
        return {"(record)": ("exists", ABSENT)}
    if event.operation != "create" and not state.exists:
        return {"(record)": (ABSENT, "exists")}
    return {
        name: (state.fields.get(name, ABSENT), value)
        for name, value in event.before.items()
        if not same(state.fields.get(name, ABSENT), value)
    }
