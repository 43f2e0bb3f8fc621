"""Prometheus metrics computed from the ledger itself, not from process counters.

A CLI process lives a second, and several processes write one ledger, so counters kept in
memory would say nothing. `LedgerCollector` computes every figure when scraped: actions from
the action index (one ``GROUP BY``), batches from its per-batch totals, and the rest from the
few events that carry it, read by topic from the notification log (the filter runs in SQL; no
entity event is decoded): lane pauses, trips and enables, run records (refusals), closed
rollback batches, saved rollback plans (conflicts), reconciliations (drift) and notifier
deliveries. `metrics_text` is what ``ledger metrics`` prints and the HTTP API serves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ledger.application import Ledger
from ledger.domain import batch_id
from ledger.lanes import Lane, LaneConfig
from ledger.notify.delivery import Delivery
from ledger.notify.notices import (
    BATCH_CLOSED,
    LANE_ENABLED,
    LANE_PAUSED,
    PLAN_SAVED,
    RECONCILIATION_CHECKED,
    ROLLBACK_BATCH,
    topic,
)
from ledger.run_records import RunRecord
from ledger.tallies import action_counts

PAGE_SIZE = 1000
LANE_STARTED = topic(Lane.Started)
RUN_RECORDED = topic(RunRecord.Recorded)
DELIVERY_STARTED = topic(Delivery.Started)
PLAN_STARTED = "ledger.rollback.records:PlanRecord.Started"
RECONCILIATION_STARTED = "ledger.lane_evidence:ReconciliationLog.Started"
_TOPICS = (
    LANE_STARTED,
    LANE_PAUSED,
    LANE_ENABLED,
    RUN_RECORDED,
    BATCH_CLOSED,
    PLAN_STARTED,
    PLAN_SAVED,
    RECONCILIATION_STARTED,
    RECONCILIATION_CHECKED,
    DELIVERY_STARTED,
)
# Seconds from a rollback plan saved to its batch closed: a minute to a week.
PLAN_TO_APPLIED_BUCKETS = (60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0, 7 * 86400.0)


@dataclass
class _Figures:
    """Everything the metrics report, gathered in one pass over the events that carry it."""

    lanes: dict[UUID, str] = field(default_factory=dict)
    paused: dict[str, bool] = field(default_factory=dict)
    pauses: Counter[tuple[str, str]] = field(default_factory=Counter)
    trips: Counter[tuple[str, str]] = field(default_factory=Counter)
    enables: Counter[tuple[str, str]] = field(default_factory=Counter)
    runs: Counter[tuple[str, str]] = field(default_factory=Counter)
    refusals: Counter[tuple[str, str]] = field(default_factory=Counter)
    closed: dict[str, datetime] = field(default_factory=dict)  # rollback batch -> closed at
    plans: dict[UUID, str] = field(default_factory=dict)
    planned: dict[str, tuple[datetime, int]] = field(default_factory=dict)  # first saving
    collections: dict[UUID, str] = field(default_factory=dict)
    checks: Counter[tuple[str, str]] = field(default_factory=Counter)
    drift: dict[str, tuple[int, int]] = field(default_factory=dict)  # last (drifted, checked)
    deliveries: list[UUID] = field(default_factory=list)


class LedgerCollector(Collector):
    """Computes the ledger's metrics on each `collect` (see docs/operations.md, Metrics)."""

    def __init__(self, ledger: Ledger, lanes: Mapping[str, LaneConfig] | None = None):
        self.ledger = ledger
        self.lanes = lanes or {}

    def collect(self) -> Iterator[Metric]:
        ledger = self.ledger
        position = ledger.recorder.max_notification_id() or 0
        rollbacks = {
            batch_id(name): name for name in ledger.index.batch_totals() if _is_rollback(name)
        }
        figures = self._gather(position, rollbacks)
        yield GaugeMetricFamily(
            "ledger_log_position", "The last position of the ledger's event log.", value=position
        )
        actions = CounterMetricFamily(
            "ledger_actions",
            "Actions recorded, by workflow and operation.",
            labels=["workflow", "operation"],
        )
        for tally in action_counts(ledger):
            actions.add_metric([tally.workflow or "", tally.operation], tally.count)
        yield actions
        yield _counter(
            "ledger_runs",
            "Runs recorded, by workflow and outcome (completed, stopped).",
            ["workflow", "outcome"],
            figures.runs,
        )
        yield _counter(
            "ledger_refusals",
            "Writes refused in recorded runs, by workflow and "
            "kind (stale: the target moved; failed).",
            ["workflow", "kind"],
            figures.refusals,
        )
        yield _counter(
            "ledger_trips",
            "Stop triggers that paused a lane, by workflow and trigger.",
            ["workflow", "trigger"],
            figures.trips,
        )
        yield _counter(
            "ledger_pauses",
            "Lane pauses, by workflow and by whom (hand, trigger).",
            ["workflow", "by"],
            figures.pauses,
        )
        yield _counter(
            "ledger_enables",
            "Lanes enabled again, by workflow and whether by override.",
            ["workflow", "override"],
            figures.enables,
        )
        state = GaugeMetricFamily(
            "ledger_lane_paused",
            "1 while a workflow's lane is paused, else 0.",
            labels=["workflow"],
        )
        for workflow in sorted(set(figures.paused) | set(self.lanes)):
            state.add_metric([workflow], 1.0 if figures.paused.get(workflow) else 0.0)
        yield state
        yield from self._rollback_health(figures, rollbacks)
        yield _counter(
            "ledger_reconciliations",
            "Reconciliation checks recorded, by collection and result (clean, drift).",
            ["collection", "result"],
            figures.checks,
        )
        drifted = GaugeMetricFamily(
            "ledger_drift_records",
            "Records found drifted by the last check of a collection.",
            labels=["collection"],
        )
        share = GaugeMetricFamily(
            "ledger_drift_share",
            "Share of the records compared that the last check of a collection found drifted.",
            labels=["collection"],
        )
        for collection, (count, checked) in sorted(figures.drift.items()):
            drifted.add_metric([collection], count)
            share.add_metric([collection], count / checked if checked else 0.0)
        yield drifted
        yield share
        yield from self._deliveries(figures)

    def _gather(self, position: int, rollbacks: dict[UUID, str]) -> _Figures:
        figures = _Figures()
        decode: Any = self.ledger.mapper.to_domain_event
        start = 1
        while start <= position:
            page = self.ledger.recorder.select_notifications(
                start, PAGE_SIZE, stop=position, topics=_TOPICS
            )
            for notification in page:
                kind, origin = notification.topic, cast(UUID, notification.originator_id)
                if kind == BATCH_CLOSED:
                    if origin in rollbacks:
                        figures.closed[rollbacks[origin]] = decode(notification).timestamp
                    continue
                if kind == DELIVERY_STARTED:
                    figures.deliveries.append(origin)
                    continue
                event: Any = decode(notification)
                if kind == LANE_STARTED:
                    figures.lanes[origin] = event.workflow
                    figures.paused.setdefault(event.workflow, False)
                elif kind in (LANE_PAUSED, LANE_ENABLED):
                    _lane_event(figures, figures.lanes[origin], kind, event)
                elif kind == RUN_RECORDED:
                    outcome = "completed" if event.completed else "stopped"
                    figures.runs[(event.workflow, outcome)] += 1
                    for refusal, count in event.refusals.items():
                        figures.refusals[(event.workflow, refusal)] += count
                elif kind == PLAN_STARTED:
                    figures.plans[origin] = event.plan
                elif kind == PLAN_SAVED and event.direction == "undo":
                    plan = figures.plans[origin]
                    figures.planned.setdefault(plan, (event.timestamp, event.conflicts))
                elif kind == RECONCILIATION_STARTED:
                    figures.collections[origin] = event.collection
                elif kind == RECONCILIATION_CHECKED:
                    collection = figures.collections[origin]
                    result = "drift" if event.drifted else "clean"
                    figures.checks[(collection, result)] += 1
                    figures.drift[collection] = (event.drifted, event.checked)
            if len(page) < PAGE_SIZE:
                break
            start = page[-1].id + 1
        return figures

    def _rollback_health(self, figures: _Figures, rollbacks: dict[UUID, str]) -> Iterator[Metric]:
        started, applied = len(rollbacks), len(figures.closed)
        yield CounterMetricFamily(
            "ledger_rollbacks_started",
            "Rollbacks that began applying (their batch exists).",
            value=started,
        )
        yield CounterMetricFamily(
            "ledger_rollbacks_applied",
            "Rollbacks applied to the end (their batch closed).",
            value=applied,
        )
        if started:
            yield GaugeMetricFamily(
                "ledger_rollback_success_ratio",
                "Rollbacks applied to the end, of those begun.",
                value=applied / started,
            )
        plans = figures.planned
        with_conflicts = sum(1 for _, conflicts in plans.values() if conflicts)
        yield CounterMetricFamily(
            "ledger_rollback_plans", "Rollback plans saved (and recorded).", value=len(plans)
        )
        yield CounterMetricFamily(
            "ledger_rollback_plans_with_conflicts",
            "Saved rollback plans that left at least one conflict for review.",
            value=with_conflicts,
        )
        yield CounterMetricFamily(
            "ledger_rollback_conflicts",
            "Conflicts in saved rollback plans.",
            value=sum(conflicts for _, conflicts in plans.values()),
        )
        if plans:
            yield GaugeMetricFamily(
                "ledger_rollback_conflict_ratio",
                "Share of saved rollback plans that had conflicts.",
                value=with_conflicts / len(plans),
            )
        waits = sorted(
            (figures.closed[f"{ROLLBACK_BATCH}{plan}"] - saved).total_seconds()
            for plan, (saved, _) in plans.items()
            if f"{ROLLBACK_BATCH}{plan}" in figures.closed
        )
        buckets = [
            (str(bound), float(sum(1 for wait in waits if wait <= bound)))
            for bound in PLAN_TO_APPLIED_BUCKETS
        ]
        yield HistogramMetricFamily(
            "ledger_rollback_plan_to_applied_seconds",
            "Seconds from a rollback plan saved to the rollback applied to the end.",
            buckets=[*buckets, ("+Inf", float(len(waits)))],
            sum_value=sum(waits),
        )

    def _deliveries(self, figures: _Figures) -> Iterator[Metric]:
        delivered = CounterMetricFamily(
            "ledger_notices_delivered", "Notices a notifier took.", labels=["notifier"]
        )
        failures = CounterMetricFamily(
            "ledger_notice_failures",
            "Failed deliveries of a notice, recorded.",
            labels=["notifier"],
        )
        failing = GaugeMetricFamily(
            "ledger_notifier_failing",
            "1 while a notifier's last delivery failed (it is retried first next time), else 0.",
            labels=["notifier"],
        )
        reached = GaugeMetricFamily(
            "ledger_notifier_position",
            "The log position up to which a notifier has been told everything.",
            labels=["notifier"],
        )
        for origin in figures.deliveries:
            state = cast(Delivery, self.ledger.repository.get(origin))
            delivered.add_metric([state.notifier], state.delivered)
            failures.add_metric([state.notifier], state.failures)
            failing.add_metric([state.notifier], 0.0 if state.failing is None else 1.0)
            reached.add_metric([state.notifier], state.position)
        yield from (delivered, failures, failing, reached)


def metrics_text(ledger: Ledger, lanes: Mapping[str, LaneConfig] | None = None) -> bytes:
    """The ledger's metrics in the Prometheus text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(ledger, lanes))
    return generate_latest(registry)


def _is_rollback(name: str) -> bool:
    return name.startswith(ROLLBACK_BATCH)


def _lane_event(figures: _Figures, workflow: str, kind: str, event: Any) -> None:
    if kind == LANE_PAUSED:
        figures.paused[workflow] = True
        figures.pauses[(workflow, "hand" if event.trigger is None else "trigger")] += 1
        if event.trigger is not None:
            figures.trips[(workflow, event.trigger)] += 1
    else:
        figures.paused[workflow] = False
        figures.enables[(workflow, "true" if event.override else "false")] += 1


def _counter(
    name: str, documentation: str, labels: list[str], counts: Counter[tuple[str, str]]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, count in sorted(counts.items()):
        family.add_metric(list(key), count)
    return family
