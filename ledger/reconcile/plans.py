"""Plans: which side wins for each drifted record, decided as data before anything is written.

Deciding is pure: `decide` turns one `Drift` and the `Rules` (a policy, field rules, whether
unknown records are deleted) into steps — a `Correction` to the target, an `Adoption` into the
ledger, or `Skipped` — so it is tested without a database. `plan_comparison` streams a
`Comparison` through it once, counting the drift as it goes, and returns a `ReconcilePlan`:
frozen data with an id that hashes its content, saved exactly with `dumps` and checked on
`loads`. `plan_reconciliation` is the one-call form: compare now, then plan.

Just over 400 lines: the plan's data, its rules and the two planning forms are one concept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

import orjson

from ledger.application import Ledger
from ledger.encoding import encode_value
from ledger.errors import InvalidChange
from ledger.points import Point
from ledger.ports import Adapter
from ledger.reconcile.compare import Comparison, Drift, ReconcileScope, compare_in_scope
from ledger.reconcile.report import SAMPLES, DriftReport, Tally
from ledger.transcoder import OrjsonTranscoder
from ledger.values import ABSENT

Policy = Literal["ledger", "target"]
POLICIES: tuple[Policy, ...] = get_args(Policy)
Operation = Literal["create", "update", "delete"]
PLAN_FORMAT = "changeledger-reconcile-plan/1"
_CODEC = OrjsonTranscoder()


@dataclass(frozen=True)
class Correction:
    """A write to the target that makes it hold the ledger's values, and nothing more.
    ``expected``: what the target held when the plan was made (ABSENT: no such field)."""

    key: str
    operation: Operation
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
    operation: Operation
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


Step = Correction | Adoption | Skipped

UNKNOWN_LEFT = (
    "unknown to the ledger: left in place (--delete-unknown deletes it, --policy target adopts it)"
)


@dataclass(frozen=True)
class Rules:
    """Which side wins: ``policy`` for every field but those ``fields`` names, and whether a
    record unknown to the ledger is deleted from the target (it may be someone's new record,
    not a mistake, so only when asked, and only when the ledger wins)."""

    policy: Policy
    fields: dict[str, Policy] = field(default_factory=dict)
    delete_unknown: bool = False

    @classmethod
    def of(
        cls,
        policy: str | None,
        field_rules: Mapping[str, str] | None = None,
        delete_unknown: bool = False,
    ) -> Rules:
        """The rules, refused (before anything is read) unless they make sense together."""
        if policy is None:
            raise InvalidChange(
                "reconciling needs an explicit --policy: ledger (correct the target) or target "
                "(adopt the target's values into the ledger)",
                field="--policy",
            )
        if policy not in POLICIES:
            raise InvalidChange(f"policy {policy!r} is not one of {', '.join(POLICIES)}")
        rules = parse_field_rules(f"{name}={side}" for name, side in (field_rules or {}).items())
        if delete_unknown and policy != "ledger":
            raise InvalidChange(
                "--delete-unknown goes with --policy ledger", field="--delete-unknown"
            )
        return cls(cast(Policy, policy), rules, delete_unknown)

    @property
    def adopts(self) -> bool:
        """Whether any field takes the target's value."""
        return "target" in (self.policy, *self.fields.values())

    def refuse_at(self, at: Point | None) -> None:
        """Adopting records the target's values now, over the ledger as it is now."""
        if at is not None and self.adopts:
            raise InvalidChange(
                "adopting the target's values records them now, so it compares against the "
                "ledger as it is now: drop --at, or use --policy ledger without target field "
                "rules",
                field="--at",
            )


def parse_field_rules(items: Iterable[str]) -> dict[str, Policy]:
    """``FIELD=ledger`` or ``FIELD=target``: which side wins for that field."""
    rules: dict[str, Policy] = {}
    for item in items:
        name, sep, side = item.partition("=")
        if not sep or not name or side not in POLICIES:
            raise InvalidChange(
                f"--field-rule {item!r} must look like FIELD=ledger or FIELD=target",
                field="--field-rule",
            )
        if name in rules:
            raise InvalidChange(f"--field-rule names field {name!r} twice", field="--field-rule")
        rules[name] = cast(Policy, side)
    return rules


def decide(drift: Drift, rules: Rules) -> tuple[Step, ...]:
    """What to do about one drifted record: pure, the same drift and rules give the same steps.
    A record whose fields are split between the two sides gets a correction and an adoption."""
    ours = {f: a for f, (a, _) in drift.fields.items() if a is not ABSENT}
    theirs = {f: b for f, (_, b) in drift.fields.items() if b is not ABSENT}
    if drift.kind == "missing_in_target":
        if rules.policy == "ledger":
            return (Correction(drift.key, "create", ours, (), {}),)
        return (Adoption(drift.key, "delete", {}, (), ours),)
    if drift.kind == "unknown_to_ledger":
        if rules.policy == "target":
            return (Adoption(drift.key, "create", theirs, (), {}),)
        if rules.delete_unknown:
            return (Correction(drift.key, "delete", {}, (), dict(theirs)),)
        return (Skipped(drift.key, UNKNOWN_LEFT),)
    steps: list[Step] = []
    to_target = [f for f in drift.fields if rules.fields.get(f, rules.policy) == "ledger"]
    to_ledger = [f for f in drift.fields if rules.fields.get(f, rules.policy) == "target"]
    if to_target:
        steps.append(
            Correction(
                drift.key,
                "update",
                {f: ours[f] for f in to_target if f in ours},
                tuple(f for f in to_target if f not in ours),
                {f: drift.fields[f][1] for f in to_target},
            )
        )
    if to_ledger:
        steps.append(
            Adoption(
                drift.key,
                "update",
                {f: theirs[f] for f in to_ledger if f in theirs},
                tuple(f for f in to_ledger if f not in theirs),
                {f: drift.fields[f][0] for f in to_ledger},
            )
        )
    return tuple(steps)


@dataclass(frozen=True)
class ReconcilePlan:
    """What reconciling a collection would do: corrections to the target, adoptions into the
    ledger, records left alone. Its id hashes its content and the ledger position it was made
    at, so the same plan applied twice (or by two processes) acts once."""

    id: str
    system: str
    collection: str
    policy: Policy
    field_rules: tuple[tuple[str, Policy], ...]
    delete_unknown: bool
    scope: ReconcileScope
    position: int
    observed_at: datetime
    corrections: tuple[Correction, ...]
    adoptions: tuple[Adoption, ...]
    skipped: tuple[Skipped, ...]
    report: DriftReport

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
            raise InvalidChange("not a plan saved by `ledger reconcile plan --out`")
        scope, summary = raw["scope"], raw["report"]
        at = Point(**scope["at"]) if scope["at"] else None
        made = cls(
            **{
                **raw,
                "scope": ReconcileScope(**{**scope, "at": at}),
                "corrections": tuple(Correction(**c) for c in raw["corrections"]),
                "adoptions": tuple(Adoption(**a) for a in raw["adoptions"]),
                "skipped": tuple(Skipped(**k) for k in raw["skipped"]),
                "report": DriftReport(
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


def plan_comparison(
    comparison: Comparison,
    rules: Rules,
    *,
    samples: int = SAMPLES,
    observed_at: datetime | None = None,
) -> ReconcilePlan:
    """Stream a comparison with the ledger once, deciding each drifted record and counting the
    drift as it goes. ``observed_at``: when the target was seen (adoptions take effect then)."""
    if comparison.against != "ledger":
        raise InvalidChange(
            "a comparison with a baseline is not a plan's start: plan against the ledger"
        )
    rules.refuse_at(comparison.scope.at)
    observed_at = observed_at or datetime.now(UTC)
    tally = Tally(samples)
    corrections: list[Correction] = []
    adoptions: list[Adoption] = []
    skipped: list[Skipped] = []
    for drift in comparison:
        tally.add(drift)
        for step in decide(drift, rules):
            if isinstance(step, Correction):
                corrections.append(step)
            elif isinstance(step, Adoption):
                adoptions.append(step)
            else:
                skipped.append(step)
    made = ReconcilePlan(
        id="",
        system=comparison.system,
        collection=comparison.collection,
        policy=rules.policy,
        field_rules=tuple(sorted(rules.fields.items())),
        delete_unknown=rules.delete_unknown,
        scope=comparison.scope,
        position=comparison.position,
        observed_at=observed_at,
        corrections=tuple(corrections),
        adoptions=tuple(adoptions),
        skipped=tuple(skipped),
        report=tally.report(comparison),
    )
    return replace(made, id=made.content_id())


def plan_reconciliation(
    ledger: Ledger,
    adapter: Adapter,
    collection: str,
    policy: str | None,
    at: Point | None = None,
    *,
    field_rules: Mapping[str, str] | None = None,
    delete_unknown: bool = False,
    tracked_only: bool = False,
    all_fields: bool = False,
    null_is_absent: bool = False,
    samples: int = SAMPLES,
) -> ReconcilePlan:
    """Compare now, then decide per drifted record (and per field, by ``field_rules``) which
    side wins. A record unknown to the ledger is deleted from the target only with
    ``delete_unknown``: it may be someone's new record, not a mistake."""
    rules = Rules.of(policy, field_rules, delete_unknown)
    rules.refuse_at(at)
    observed_at = datetime.now(UTC)
    scope = ReconcileScope(at, tracked_only, all_fields, null_is_absent)
    comparison = compare_in_scope(ledger, adapter, collection, scope)
    return plan_comparison(comparison, rules, samples=samples, observed_at=observed_at)


def load_plan(
    data: bytes,
    system: str,
    collection: str,
    *,
    policy: str | None = None,
    field_rules: Mapping[str, str] | None = None,
    delete_unknown: bool = False,
    scope: ReconcileScope | None = None,
) -> ReconcilePlan:
    """A saved plan, to apply to ``system``/``collection`` exactly as it was made: it keeps its
    own policy, field rules and scope, so giving any of them again is refused, not ignored."""
    scope = scope or ReconcileScope()
    given = [
        option
        for option, value in (
            ("--policy", policy),
            ("--field-rule", field_rules),
            ("--delete-unknown", delete_unknown),
            ("--at", scope.at),
            ("--tracked-only", scope.tracked_only),
            ("--all-fields", scope.all_fields),
            ("--null-is-absent", scope.null_is_absent),
        )
        if value
    ]
    if given:
        raise InvalidChange(
            "a saved plan keeps its own --policy, --field-rule and --at (and the rest of its "
            f"scope): drop {', '.join(given)}, or plan again with them",
            field=given[0],
        )
    made = ReconcilePlan.loads(data)
    if (made.system, made.collection) != (system, collection):
        raise InvalidChange(
            f"that plan is for {made.system}/{made.collection}, not {system}/{collection}"
        )
    return made
