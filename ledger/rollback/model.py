"""The parts of a rollback plan: what to reverse, the writes, the conflicts, the contracts.

Plain frozen data, no I/O: the planner builds them, `RollbackPlan` holds them, the runbook and
the CLI show them. The policies and directions are `Literal` types; the entry points take the
user's text and narrow it with `choose`, so a bad value is a one-line error naming the option.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, NamedTuple, TypeVar, cast, get_args

from ledger.errors import InvalidChange

Policy = Literal["skip", "fields", "force", "abort"]
MissingParent = Literal["skip", "abort"]  # a re-created record whose parent record is gone
OnFailure = Literal["continue", "stop"]  # when the target refuses a compensation
Direction = Literal["undo", "redo"]  # a rollback, or a replay
Operation = Literal["update", "create", "delete"]
Repair = Literal["notify", "amend", "reopen", "revoke", "rerun"]

POLICIES: tuple[Policy, ...] = get_args(Policy)
MISSING_PARENT: tuple[MissingParent, ...] = get_args(MissingParent)
ON_FAILURE: tuple[OnFailure, ...] = get_args(OnFailure)
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)
REPAIRS: tuple[Repair, ...] = get_args(Repair)

_Choice = TypeVar("_Choice", bound=str)


def choose(value: str, allowed: tuple[_Choice, ...], what: str, field: str) -> _Choice:
    """The user's ``value`` as one of ``allowed``, or a one-line error naming the option."""
    if value not in allowed:
        raise InvalidChange(f"{what} {value!r} is not one of {', '.join(allowed)}", field=field)
    return cast(_Choice, value)


class ScopedAction(NamedTuple):
    """One action of the scope on a record: its version, its log position, its fingerprint."""

    version: int
    position: int
    fingerprint: str


@dataclass(frozen=True)
class RollbackScope:
    """Which actions to reverse: batches, or a workflow's (or everyone's) actions since a point."""

    batches: tuple[str, ...] = ()
    workflow: str | None = None
    since: str | None = None  # a point: checkpoint name, time, position:N
    system: str | None = None
    collection: str | None = None

    def describe(self) -> str:
        parts = []
        if self.batches:
            parts.append(f"batch {', '.join(self.batches)}")
        if self.workflow:
            parts.append(f"workflow {self.workflow}")
        if self.since:
            parts.append(f"since {self.since}")
        if self.system:
            parts.append(f"in {self.system}" + (f"/{self.collection}" if self.collection else ""))
        return "; ".join(parts) or "everything"


_KINDS = {"update": "restore", "create": "re-create", "delete": "delete"}


@dataclass(frozen=True)
class Compensation:
    """The net write that restores one record: values to set, fields to remove, or existence."""

    entity: str
    operation: Operation  # "update", "create" (re-create) or "delete"
    values: dict[str, Any]
    unset: tuple[str, ...]
    expected: dict[str, Any]  # what the target must still hold (compare-and-set)
    compensates: tuple[str, ...]  # fingerprints of the actions it undoes, newest first
    position: int  # the newest of those actions' log position: the order key
    new_key: bool = False  # a re-create the system will store under a key of its choosing

    @property
    def kind(self) -> str:
        kind = _KINDS[self.operation]
        return f"{kind} (new key)" if self.new_key else kind


@dataclass(frozen=True)
class Conflict:
    """A record changed after the scope by someone else: the competing values and who made them."""

    entity: str
    reason: str  # "later action", "drift in the target" (both joined by "and"), "missing parent"
    fields: tuple[str, ...]
    competing: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Contract:
    """What a rollback may do in one collection, declared in ``ledger.toml``.

    ``protected`` fields are never changed by a rollback; actions older than ``window`` are not
    reversed automatically; a ``repair`` marks the collection's actions as irreversible by nature
    (an email sent, a webhook called): the plan lists that repair, with its ``owner``, instead."""

    protected: tuple[str, ...] = ()
    window: timedelta | None = None
    repair: str | None = None
    owner: str | None = None


@dataclass(frozen=True)
class FollowUp:
    """Something a person must do, because a contract kept the rollback from doing it."""

    entity: str
    action: str  # a repair verb, or "review"
    reason: str
    owner: str | None = None
