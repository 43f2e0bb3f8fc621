"""Reconciliation: find drift between the ledger and a target system, and correct it minimally.

One job per module, each layer using only those before it: `compare` (the ledger's projection
and the target's scan merged in key order into drifts), `report` (drift summed up), `plans`
(which side wins, decided as data by a pure step over the drifts), `evidence` (a
reconciliation of now recorded, as lane evidence and for the drift trigger), `apply` (a plan
carried out exactly once, then verified) and `baselines` (the target before a batch, checked
after it).
"""

from ledger.reconcile.apply import ReconcileResult, apply_reconciliation
from ledger.reconcile.baselines import Baseline, capture_baseline, compare_baseline
from ledger.reconcile.compare import (
    KINDS,
    Comparison,
    Drift,
    DriftKind,
    ReconcileScope,
    compare_in_scope,
    compare_with_target,
)
from ledger.reconcile.evidence import DriftCheck, check_reconciliation, record_report
from ledger.reconcile.plans import (
    POLICIES,
    Adoption,
    Correction,
    Policy,
    ReconcilePlan,
    Rules,
    Skipped,
    Step,
    decide,
    load_plan,
    parse_field_rules,
    plan_comparison,
    plan_reconciliation,
)
from ledger.reconcile.report import SAMPLES, DriftReport

__all__ = [
    "KINDS",
    "POLICIES",
    "SAMPLES",
    "Adoption",
    "Baseline",
    "Comparison",
    "Correction",
    "Drift",
    "DriftCheck",
    "DriftKind",
    "DriftReport",
    "Policy",
    "ReconcilePlan",
    "ReconcileResult",
    "ReconcileScope",
    "Rules",
    "Skipped",
    "Step",
    "apply_reconciliation",
    "capture_baseline",
    "check_reconciliation",
    "compare_baseline",
    "compare_in_scope",
    "compare_with_target",
    "decide",
    "load_plan",
    "parse_field_rules",
    "plan_comparison",
    "plan_reconciliation",
    "record_report",
]
