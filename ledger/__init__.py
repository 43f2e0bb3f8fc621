"""changeledger: an event-sourced change ledger for automations.

Record every workflow action with its before- and after-values, inspect any record or
collection at any point in time, and (in later releases) roll back safely.
"""

from ledger import _library  # noqa: F401  (first: the library imported on our terms)
from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.changes import Change
from ledger.domain import Address, entity_id
from ledger.errors import (
    AdapterError,
    BatchClosed,
    BeforeMismatch,
    CanaryLimit,
    CheckpointExists,
    ConcurrencyConflict,
    ConfigurationError,
    FingerprintReused,
    InvalidChange,
    InvalidValue,
    LedgerError,
    NotFound,
    RunInterrupted,
    StaleWrite,
    StoreUnavailable,
    TamperDetected,
    TargetRejected,
    TransientError,
    UnknownCheckpoint,
)
from ledger.evidence import digest, prove, verify
from ledger.integrity import InclusionReceipt, VerifyReport
from ledger.points import Point
from ledger.reconcile import (
    Comparison,
    Drift,
    DriftReport,
    ReconcilePlan,
    ReconcileResult,
    ReconcileScope,
    apply_reconciliation,
    capture_baseline,
    compare_baseline,
    compare_with_target,
    plan_reconciliation,
)
from ledger.rollback import (
    RollbackPlan,
    RollbackReport,
    RollbackScope,
    apply_rollback,
    plan_rollback,
    verify_rollback,
)
from ledger.runs import Outcome, Run, System, Target
from ledger.values import ABSENT
from ledger.views import ActionView, BatchView, CheckpointView, EntityDiff, EntityState, Receipt

__all__ = [
    "ABSENT",
    "ActionView",
    "AdapterError",
    "Address",
    "BatchClosed",
    "BatchView",
    "BeforeMismatch",
    "CanaryLimit",
    "Change",
    "CheckpointExists",
    "CheckpointView",
    "Comparison",
    "ConcurrencyConflict",
    "ConfigurationError",
    "Drift",
    "DriftReport",
    "EntityDiff",
    "EntityState",
    "FingerprintReused",
    "InclusionReceipt",
    "InvalidChange",
    "InvalidValue",
    "Ledger",
    "LedgerError",
    "NotFound",
    "Outcome",
    "Point",
    "Receipt",
    "ReconcilePlan",
    "ReconcileResult",
    "ReconcileScope",
    "RollbackPlan",
    "RollbackReport",
    "RollbackScope",
    "Run",
    "RunInterrupted",
    "StaleWrite",
    "StoreUnavailable",
    "System",
    "TamperDetected",
    "Target",
    "TargetRejected",
    "TransientError",
    "UnknownCheckpoint",
    "VerifyReport",
    "apply_reconciliation",
    "apply_rollback",
    "capture_baseline",
    "compare_baseline",
    "compare_with_target",
    "digest",
    "entity_id",
    "open_ledger",
    "plan_reconciliation",
    "plan_rollback",
    "prove",
    "verify",
    "verify_rollback",
]
