"""changeledger: an event-sourced change ledger for automations.

Record every workflow action with its before- and after-values, inspect any record or
collection at any point in time, and (in later releases) roll back safely.
"""

from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.changes import Change
from ledger.domain import Address, entity_id
from ledger.errors import (
    BatchClosed,
    BeforeMismatch,
    CheckpointExists,
    ConcurrencyConflict,
    ConfigurationError,
    InvalidChange,
    InvalidValue,
    LedgerError,
    NotFound,
    UnknownCheckpoint,
)
from ledger.points import Point
from ledger.values import ABSENT
from ledger.views import Action, BatchView, CheckpointView, EntityDiff, EntityState, Receipt

__all__ = [
    "ABSENT",
    "Action",
    "Address",
    "BatchClosed",
    "BatchView",
    "BeforeMismatch",
    "Change",
    "CheckpointExists",
    "CheckpointView",
    "ConcurrencyConflict",
    "ConfigurationError",
    "EntityDiff",
    "EntityState",
    "InvalidChange",
    "InvalidValue",
    "Ledger",
    "LedgerError",
    "NotFound",
    "Point",
    "Receipt",
    "UnknownCheckpoint",
    "entity_id",
    "open_ledger",
]
