"""Every error the ledger raises, under one root so callers can catch them together.

    LedgerError
     ├── InvalidChange          a change or value is malformed; nothing was recorded
     │    ├── InvalidValue      a value cannot be stored exactly (NaN, too deep, too big)
     │    ├── BeforeMismatch    given before-values contradict the ledger's projection
     │    └── FingerprintReused an idempotency key already names a different action
     ├── ConcurrencyConflict    the entity kept moving under us; retry later
     ├── BatchClosed            an action was recorded into a closed batch
     ├── CanaryLimit            a canary batch reached its limit; the rest was not applied
     ├── RunInterrupted         a run stopped by an error after some writes had landed
     ├── NotFound               an entity, batch or checkpoint that does not exist
     │    └── UnknownCheckpoint
     ├── CheckpointExists       a checkpoint name is already taken
     ├── ConfigurationError     a bad setting, naming its key
     ├── StoreUnavailable       the ledger's own database cannot be reached, opened or
     │                          written (unreachable, locked, read-only)
     ├── TamperDetected         the history, a signed head, a digest or a receipt does not
     │                          check out (names the first place it breaks and how)
     └── AdapterError           a target system refused or failed a read or write
          ├── StaleWrite        compare-and-set refused: the target no longer holds the
          │                     expected value (names record, field, expected, actual)
          ├── TransientError    worth retrying (connection, timeout, 429, 5xx)
          └── TargetRejected    permanent refusal (4xx, constraint), with the system's reason

Messages name the record, the field and what to do. Errors are translated into exit
codes only at the edges (the CLI).
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""


class InvalidChange(LedgerError):
    """A change is malformed: the message names the line, the field and what was expected."""

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None):
        self.line = line
        self.field = field
        self.reason = message
        prefix = f"line {line}: " if line is not None else ""
        super().__init__(prefix + message)

    def at_line(self, line: int) -> InvalidChange:
        """The same error, located at an input line."""
        located = type(self).__new__(type(self))
        located.__dict__.update(self.__dict__)
        located.line = line
        located.args = (f"line {line}: {self.reason}",)
        return located


class InvalidValue(InvalidChange):
    """A value cannot be stored exactly as given."""


class BeforeMismatch(InvalidChange):
    """The before-values of a change contradict what the ledger knows of the entity."""

    def __init__(self, entity: str, field: str, expected: Any, given: Any):
        self.entity = entity
        self.expected = expected
        self.given = given
        super().__init__(
            f"{entity}: field {field!r} is {expected!r} in the ledger, "
            f"but the change says it was {given!r}; "
            "re-read the record and draft the change again, or omit 'before' "
            "to let the ledger fill it in",
            field=field,
        )


class FingerprintReused(InvalidChange):
    """An idempotency key sent again with different content: answering with the first
    action's receipt would drop the new change silently (payment APIs refuse it too)."""


class ConcurrencyConflict(LedgerError):
    """Another writer kept changing the same entity; nothing of this change was recorded."""


class BatchClosed(LedgerError):
    """Actions cannot be added to a batch once it is closed."""


class CanaryLimit(LedgerError):
    """A canary batch may apply only its first N actions; the next one is refused."""


class RunInterrupted(LedgerError):
    """A run stopped by an error after some of its writes had landed (and were recorded): the
    message says how many, and that running it again goes on without applying any twice."""


class NotFound(LedgerError):
    """The named entity, batch or checkpoint does not exist."""


class UnknownCheckpoint(NotFound):
    """No checkpoint has this name."""


class CheckpointExists(LedgerError):
    """Checkpoint names are unique: a name always means one position."""


class ConfigurationError(LedgerError):
    """A setting is missing or malformed; the message names its key."""


class StoreUnavailable(LedgerError):
    """The ledger's own database cannot be used right now; the message says why and what to do."""


class AdapterError(LedgerError):
    """A target system failed or refused; the message names the system, record and field."""


class StaleWrite(AdapterError):
    """A compare-and-set write was refused because the target moved; nothing was written."""

    def __init__(self, record: str, field: str, expected: Any, actual: Any):
        self.record = record
        self.field = field
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{record}: field {field!r} was expected to be {expected!r} but the target holds "
            f"{actual!r}; someone changed it since it was read, so nothing was written"
        )


class TransientError(AdapterError):
    """A failure that may pass if the same request is retried (connection, timeout, 429, 5xx)."""


class TargetRejected(AdapterError):
    """The target refused a write for good (a 4xx, a constraint); its reason is in the message."""


class TamperDetected(LedgerError):
    """Stored history, a signed tree head, a digest or a receipt fails its check: the message
    names the first place it breaks and how, and nothing past it can be trusted."""


# Lanes (ledger.lanes, ledger.lane_control): LanePaused, LaneNotPaused and ReenableRefused
# under LedgerError; ApprovalRefused and ApprovalRequired for the two-person rule.


class LanePaused(LedgerError):
    """A write of a paused workflow was refused before anything was written; the message names
    who paused it, when, why and the trigger that did."""

    def __init__(self, message: str, *, workflow: str):
        self.workflow = workflow
        super().__init__(message)


class LaneNotPaused(LedgerError):
    """Enabling (or admitting a canary into) a lane that is active: nothing to prove."""


class ReenableRefused(LedgerError):
    """A paused lane's re-enable rule does not hold; the message names each unmet condition."""

    def __init__(self, message: str, *, unmet: tuple[str, ...]):
        self.unmet = unmet
        super().__init__(message)


class ApprovalRefused(LedgerError):
    """An approval the two-person rule does not accept (the planner approving their own plan)."""


class ApprovalRequired(LedgerError):
    """A rollback plan of a two-person lane is unapproved, or was altered since its approval."""
