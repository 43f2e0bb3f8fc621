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
    LanePaused,
    LedgerError,
    NotFound,
    ReenableRefused,
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
from ledger.lane_config import load_lanes
from ledger.lane_control import allow_canary, pause_lane
from ledger.lane_control import lane as lane_view
from ledger.lane_control import lanes as lane_views
from ledger.lane_enable import enable_workflow
from ledger.lane_evidence import last_reconciliation, record_reconciliation
from ledger.lanes import LaneConfig, LaneView
from ledger.metrics import metrics_text
from ledger.notify import DeliveryReport, deliver_notices
from ledger.points import Point
from ledger.receipts import ActionReceipt, receipt
from ledger.reconcile import (
    Comparison,
    Drift,
    DriftReport,
    ReconcilePlan,
    ReconcileResult,
    ReconcileScope,
    apply_reconciliation,
    capture_baseline,
    check_reconciliation,
    compare_baseline,
    compare_with_target,
    plan_reconciliation,
)
from ledger.rollback import (
    RollbackPlan,
    RollbackReport,
    RollbackScope,
    apply_rollback,
    approve_rollback_plan,
    plan_rollback,
    plan_tripped_rollback,
    rollback_plans,
    verify_rollback,
)
from ledger.runbooks import runbook
from ledger.runs import Outcome, Run, System, Target
from ledger.tokens import create_token, list_tokens, revoke_token
from ledger.values import ABSENT
from ledger.views import ActionView, BatchView, CheckpointView, EntityDiff, EntityState, Receipt

__all__ = [
    "ABSENT",
    "ActionReceipt",
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
    "DeliveryReport",
    "Drift",
    "DriftReport",
    "EntityDiff",
    "EntityState",
    "FingerprintReused",
    "InclusionReceipt",
    "InvalidChange",
    "InvalidValue",
    "LaneConfig",
    "LanePaused",
    "LaneView",
    "Ledger",
    "LedgerError",
    "NotFound",
    "Outcome",
    "Point",
    "Receipt",
    "ReconcilePlan",
    "ReconcileResult",
    "ReconcileScope",
    "ReenableRefused",
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
    "allow_canary",
    "apply_reconciliation",
    "apply_rollback",
    "approve_rollback_plan",
    "capture_baseline",
    "check_reconciliation",
    "compare_baseline",
    "compare_with_target",
    "create_token",
    "deliver_notices",
    "digest",
    "enable_workflow",
    "entity_id",
    "lane_view",
    "lane_views",
    "last_reconciliation",
    "list_tokens",
    "load_lanes",
    "metrics_text",
    "open_ledger",
    "pause_lane",
    "plan_reconciliation",
    "plan_rollback",
    "plan_tripped_rollback",
    "prove",
    "receipt",
    "record_reconciliation",
    "revoke_token",
    "rollback_plans",
    "runbook",
    "verify",
    "verify_rollback",
]
