"""A reconciliation of now, recorded: the evidence a lane's re-enable rule reads, and the
moment its drift trigger is judged (`ledger.lane_evidence`).

Only a full comparison of the ledger as it is now with the target is a reconciliation in this
sense: one of the past (``--at``) or of tracked records only (``--tracked-only``) says
nothing about whether the collection holds what the ledger says today, so it is not recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.application import Ledger
from ledger.lane_evidence import ReconciliationRecord, record_reconciliation
from ledger.lanes import LaneConfig
from ledger.ports import Adapter
from ledger.reconcile.compare import ReconcileScope, compare_in_scope
from ledger.reconcile.report import SAMPLES, DriftReport


@dataclass(frozen=True)
class DriftCheck:
    """A collection's drift report and, for a reconciliation of now, its record."""

    report: DriftReport
    recorded: ReconciliationRecord | None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.report.to_json(),
            "recorded": None if self.recorded is None else self.recorded.to_json(),
        }


def record_report(
    ledger: Ledger,
    report: DriftReport,
    scope: ReconcileScope,
    *,
    actor: str,
    lanes: Mapping[str, LaneConfig] | None = None,
) -> ReconciliationRecord | None:
    """Record a drift report as a reconciliation of its collection and judge the lanes'
    drift triggers, when it compared the whole collection as it is now (else ``None``)."""
    if scope.at is not None or scope.tracked_only:
        return None
    return record_reconciliation(
        ledger,
        f"{report.system}/{report.collection}",
        report.drifted,
        report.records,
        actor=actor,
        counts=report.counts,
        lanes=lanes,
    )


def check_reconciliation(
    ledger: Ledger,
    adapter: Adapter,
    collection: str,
    scope: ReconcileScope,
    *,
    actor: str,
    lanes: Mapping[str, LaneConfig] | None = None,
    samples: int = SAMPLES,
) -> DriftCheck:
    """Compare a collection with the target (`ledger reconcile check`), then record the
    result and pause the lanes whose ``drift_share`` it exceeds (`record_report`)."""
    report = DriftReport.of(compare_in_scope(ledger, adapter, collection, scope), samples)
    return DriftCheck(report, record_report(ledger, report, scope, actor=actor, lanes=lanes))
