"""Stop triggers: pure decisions over a run's running statistics, so a lane pauses mid-run.

A lane declares its triggers (`Triggers`, read from ``ledger.toml``); a run feeds a
`RunStatistics` chunk by chunk and asks `check_run` after each chunk whether one trips.
Rollback plans and reconciliations ask `check_rollback_plan` and `check_drift`. Every
answer is a `Trip` naming the trigger, its rule and the evidence that tripped it, or
``None``: no I/O here, so each rule is tested directly and the evidence is what is recorded.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from ledger.points import parse_time

Operation = Literal["create", "update", "delete"]
Refusal = Literal["stale", "failed"]
OPERATIONS: tuple[Operation, ...] = ("create", "update", "delete")


# Declarations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    """Refusals of one kind may be at most ``above`` of the attempts, once there are
    ``min_actions`` attempts (a few early failures are no evidence)."""

    above: float
    min_actions: int = 1


@dataclass(frozen=True)
class VolumeLimit:
    """How many actions of one operation a run may take: an absolute ceiling and/or a
    ceiling relative to the median of the workflow's last ``runs`` runs."""

    more_than: int | None = None
    above_median_percent: float | None = None
    runs: int = 5


@dataclass(frozen=True)
class FieldGuard:
    """What one field may do: move only forwards in ``order``, and/or change by at most
    ``at_most_percent`` of its value."""

    order: tuple[Any, ...] = ()
    at_most_percent: float | None = None


@dataclass(frozen=True)
class Triggers:
    """A lane's stop triggers; ``None`` or empty means not declared."""

    failure_rate: RateLimit | None = None
    stale_rate: RateLimit | None = None
    volume: Mapping[Operation, VolumeLimit] = field(default_factory=dict)
    too_few: int | None = None  # a run that ends with fewer actions is a stalled integration
    fields: Mapping[str, FieldGuard] = field(default_factory=dict)
    rollback_conflicts: int | None = None  # a rollback plan with more conflicts trips
    drift_share: float | None = None  # a reconciliation drifting on more of a collection trips
    source_age: timedelta | None = None  # a change drafted from older source records trips


@dataclass(frozen=True)
class Trip:
    """A trigger that tripped: its name, the rule in words and the evidence, as recorded."""

    trigger: str
    rule: str
    evidence: dict[str, Any]

    def describe(self) -> str:
        return f"{self.trigger} tripped: {self.rule}"


# What a run has done so far ----------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    """One watched field's move in one action."""

    record: str
    before: Any
    after: Any


@dataclass
class RunStatistics:
    """A run's running counts, fed chunk by chunk (`add_action`, `add_refusal`).

    Only the fields some guard watches keep their before/after values, and only the oldest
    source timestamp is kept, so the statistics of a long run stay small.
    """

    watched: frozenset[str] = frozenset()
    actions: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    field_changes: dict[str, list[FieldChange]] = field(default_factory=dict)
    oldest_source: tuple[datetime, str] | None = None  # (its time, the source record)
    already: int = 0  # actions a resumed run found recorded by its earlier attempt

    @classmethod
    def watching(cls, triggers: Triggers) -> RunStatistics:
        """Statistics that keep what ``triggers`` need to judge."""
        return cls(watched=frozenset(triggers.fields))

    def add_action(
        self,
        operation: str,
        record: str,
        changes: Mapping[str, tuple[Any, Any]] | None = None,
        sources: Mapping[str, datetime] | None = None,
    ) -> None:
        """One applied action: its operation, the record, ``{field: (before, after)}`` and
        the timestamps of the source records it was drafted from."""
        self.actions[operation] += 1
        for name, (before, after) in (changes or {}).items():
            if name in self.watched:
                self.field_changes.setdefault(name, []).append(FieldChange(record, before, after))
        for source, at in (sources or {}).items():
            if self.oldest_source is None or at < self.oldest_source[0]:
                self.oldest_source = (at, source)

    def add_already(self, count: int = 1) -> None:
        """Actions of the batch an earlier attempt of the run applied: not judged again, but
        a resumed run that finds its work done is not a stalled one (``too_few``)."""
        self.already += count

    def add_refusal(self, kind: Refusal, count: int = 1) -> None:
        """A write refused as stale, or failed for good."""
        self.refusals[kind] += count

    @property
    def total_actions(self) -> int:
        return sum(self.actions.values())

    @property
    def attempts(self) -> int:
        """Actions applied plus writes refused: what a refusal rate is a share of."""
        return self.total_actions + sum(self.refusals.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "actions": dict(self.actions),
            "refusals": dict(self.refusals),
            "attempts": self.attempts,
            "already_applied": self.already,
        }


# The decisions ------------------------------------------------------------------------------


def check_run(
    triggers: Triggers,
    run: RunStatistics,
    recent: Sequence[RunStatistics] = (),
    *,
    now: datetime | None = None,
    ended: bool = False,
) -> Trip | None:
    """The first of ``triggers`` that ``run`` trips, judged against the workflow's ``recent``
    runs (most recent last); ``too_few`` only once the run has ``ended``, source ages only
    when ``now`` is given."""
    checks = (
        _rate("failure_rate", "failed", triggers.failure_rate, run),
        _rate("stale_rate", "stale", triggers.stale_rate, run),
        *(_volume(op, limit, run, recent) for op, limit in triggers.volume.items()),
        *(_field(name, guard, run) for name, guard in triggers.fields.items()),
        _source_age(triggers.source_age, run, now),
        _too_few(triggers.too_few, run) if ended else None,
    )
    return next((trip for trip in checks if trip is not None), None)


def check_rollback_plan(triggers: Triggers, plan: str, conflicts: int) -> Trip | None:
    """Whether a rollback plan has more conflicts than the lane accepts."""
    limit = triggers.rollback_conflicts
    if limit is None or conflicts <= limit:
        return None
    return Trip(
        "rollback_conflicts",
        f"rollback plan {plan} has {conflicts} conflicts, more than {limit}",
        {"plan": plan, "conflicts": conflicts, "more_than": limit},
    )


def check_drift(triggers: Triggers, collection: str, drifted: int, total: int) -> Trip | None:
    """Whether a reconciliation found drift on more of ``collection`` than the lane accepts."""
    limit = triggers.drift_share
    if limit is None or total == 0 or drifted / total <= limit:
        return None
    return Trip(
        "drift_share",
        f"{drifted} of {total} records of {collection} drifted ({drifted / total:.1%}), "
        f"more than {limit:.1%}",
        {"collection": collection, "drifted": drifted, "total": total, "above": limit},
    )


def _rate(name: str, kind: str, limit: RateLimit | None, run: RunStatistics) -> Trip | None:
    attempts, refused = run.attempts, run.refusals[kind]
    if limit is None or attempts < limit.min_actions or refused / attempts <= limit.above:
        return None
    return Trip(
        name,
        f"{refused} of {attempts} writes {kind} ({refused / attempts:.1%}), "
        f"more than {limit.above:.1%} after at least {limit.min_actions}",
        {
            kind: refused,
            "attempts": attempts,
            "above": limit.above,
            "min_actions": limit.min_actions,
        },
    )


def _volume(
    operation: str, limit: VolumeLimit, run: RunStatistics, recent: Sequence[RunStatistics]
) -> Trip | None:
    count = run.actions[operation]
    if limit.more_than is not None and count > limit.more_than:
        return Trip(
            f"{operation}s",
            f"{count} {operation}s in this run, more than {limit.more_than}",
            {"operation": operation, "count": count, "more_than": limit.more_than},
        )
    baseline = [past.actions[operation] for past in recent[-limit.runs :]]
    if limit.above_median_percent is None or not baseline:
        return None
    median = statistics.median(baseline)
    ceiling = median * (1 + limit.above_median_percent / 100)
    if median == 0 or count <= ceiling:  # a percentage of nothing is no baseline
        return None
    return Trip(
        f"{operation}s_vs_median",
        f"{count} {operation}s in this run, more than +{limit.above_median_percent:g}% of "
        f"the median {median:g} of the last {len(baseline)} runs",
        {
            "operation": operation,
            "count": count,
            "median": median,
            "runs": baseline,
            "above_median_percent": limit.above_median_percent,
        },
    )


def _too_few(fewer_than: int | None, run: RunStatistics) -> Trip | None:
    if fewer_than is None or run.total_actions + run.already >= fewer_than:
        return None
    return Trip(
        "too_few",
        f"the run ended with {run.total_actions} actions, fewer than {fewer_than} "
        "(a stalled integration?)",
        {"actions": run.total_actions, "fewer_than": fewer_than},
    )


def _field(name: str, guard: FieldGuard, run: RunStatistics) -> Trip | None:
    for change in run.field_changes.get(name, ()):
        if _backwards(guard.order, change.before, change.after):
            return Trip(
                "field_order",
                f"{change.record}: {name} moved backwards from {change.before!r} to "
                f"{change.after!r} (order: {', '.join(map(str, guard.order))})",
                {
                    "field": name,
                    "record": change.record,
                    "before": change.before,
                    "after": change.after,
                    "order": list(guard.order),
                },
            )
        share = _change_share(change.before, change.after)
        if (
            guard.at_most_percent is not None
            and share is not None
            and (share * 100 > guard.at_most_percent)
        ):
            return Trip(
                "field_change",
                f"{change.record}: {name} changed from {change.before!r} to {change.after!r}, "
                f"more than {guard.at_most_percent:g}%",
                {
                    "field": name,
                    "record": change.record,
                    "before": change.before,
                    "after": change.after,
                    "at_most_percent": guard.at_most_percent,
                },
            )
    return None


def _backwards(order: tuple[Any, ...], before: Any, after: Any) -> bool:
    """Whether a move goes back in ``order``; values outside the order are not judged."""
    if before not in order or after not in order:
        return False
    return order.index(after) < order.index(before)


def _change_share(before: Any, after: Any) -> float | None:
    """``|after - before| / |before|`` for two numbers (infinite from zero), else ``None``."""
    numbers = (int, float, Decimal)
    if isinstance(before, bool) or isinstance(after, bool):
        return None
    if not isinstance(before, numbers) or not isinstance(after, numbers):
        return None
    if before == after:
        return 0.0
    if before == 0:
        return float("inf")
    return float(abs(Decimal(str(after)) - Decimal(str(before))) / abs(Decimal(str(before))))


def _source_age(limit: timedelta | None, run: RunStatistics, now: datetime | None) -> Trip | None:
    if limit is None or now is None or run.oldest_source is None:
        return None
    at, source = run.oldest_source
    if now - at <= limit:
        return None
    return Trip(
        "source_age",
        f"source record {source} is from {at.isoformat()}, older than {limit}",
        {"source": source, "at": at, "now": now, "older_than_seconds": limit.total_seconds()},
    )


_DATED = re.compile(r"^(?P<name>.+)@(?P<time>\d{4}-\d{2}-\d{2}.*)$")


def source_times(sources: Iterable[str]) -> dict[str, datetime]:
    """The times of the sources declared as ``NAME@TIME`` (an ISO 8601 time with a timezone,
    e.g. ``sheet/leads/17@2026-11-27T09:00:00Z``), by name; a source without one (an ``@``
    not followed by a date, as in ``bob@example.com``) has no time. A malformed time is
    refused naming the source (`InvalidChange`)."""
    found: dict[str, datetime] = {}
    for source in sources:
        match = _DATED.match(source)
        if match is not None:
            found[match["name"]] = parse_time(match["time"], f"source {source!r}: its time")
    return found
