"""The ledger's aggregates and events: pure data and state transitions, no I/O.

One `Entity` aggregate per external record, addressed as ``system/collection/key``
and identified by a uuid5 of that address, so every process maps a record to the same
aggregate. Each recorded action is one immutable event carrying its before- and
after-values; the entity's state is the fold of those events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, lru_cache
from typing import Any, Final
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from ledger._library import init_built, trigger_built
from ledger.errors import InvalidChange
from ledger.keys import canonical_key
from ledger.values import ABSENT

NAMESPACE: Final = UUID("6f1c1d1e-8f55-4f5b-9a51-0b7e4c3d2a10")
OPERATIONS: Final = ("create", "update", "delete")
# Recorded by the ledger, never submitted: a record created under a key the system chose
# (a REST API assigning ids) lives on at that key; its requested key records a move there.
MOVE: Final = "move"
# Recorded by the ledger, never submitted: the whole record as the ledger first saw it in its
# system (a run's first touch, or `ledger track`). It changes nothing in the system, so it has
# nothing to compensate and no rollback scope contains it.
TRACK: Final = "track"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True, order=True)
class Address:
    """Where a record lives: ``system/collection/key``; the key may itself contain slashes.
    The key is kept in its one form (`canonical_key`), so every spelling of it is one record."""

    system: str
    collection: str
    key: str

    def __post_init__(self) -> None:
        if "%" in self.key:
            object.__setattr__(self, "key", canonical_key(self.key))

    @classmethod
    def parse(cls, text: str) -> Address:
        parts = text.split("/", 2)
        if len(parts) != 3 or not parts[2]:
            raise InvalidChange(
                f"entity {text!r} is not of the form system/collection/key", field="entity"
            )
        address = cls(*parts)
        address.check()
        return address

    def check(self) -> None:
        for part in ("system", "collection"):
            value = getattr(self, part)
            if not _NAME.match(value):
                raise InvalidChange(
                    f"{part} {value!r} must be letters, digits, '_', '.' or '-'", field="entity"
                )
        if not self.key:
            raise InvalidChange("entity key must not be empty", field="entity")

    @cached_property
    def entity_id(self) -> UUID:
        """Kept once derived: recording a change reads it twice (loading the record, creating
        it), and a uuid5 is a SHA-1 of the address."""
        return entity_id(self.system, self.collection, self.key)

    def __str__(self) -> str:
        return f"{self.system}/{self.collection}/{self.key}"


def entity_id(system: str, collection: str, key: str) -> UUID:
    """The aggregate id of a record: deterministic, so any process derives the same one."""
    return uuid5(NAMESPACE, f"{system}/{collection}/{key}")


@lru_cache(maxsize=256)
def batch_id(name: str) -> UUID:
    """A batch's aggregate id (derived once per name: every `record` looks its batch up)."""
    return uuid5(NAMESPACE, f"batch:{name}")


def checkpoint_id(name: str) -> UUID:
    return uuid5(NAMESPACE, f"checkpoint:{name}")


def fold(
    fields: dict[str, Any], operation: str, before: dict[str, Any], after: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """Apply one action to a record's fields; returns the new fields and whether it exists."""
    if operation == "create" or operation == TRACK:
        return dict(after), True
    if operation in ("delete", MOVE):
        return {}, False
    removed = {name for name in before if name not in after}
    folded = {name: value for name, value in fields.items() if name not in removed}
    folded.update(after)
    return folded, True


def compensation_for(operation: str, before: dict[str, Any], after: dict[str, Any]) -> dict:
    """What restores the before-state, stored with the action so a rollback need not guess."""
    if operation == "create":
        return {"operation": "delete", "expect": dict(after)}
    if operation == "delete":
        return {"operation": "create", "set": dict(before)}
    if operation == MOVE:
        return {"operation": "none"}  # the record's creation at its new key is what undoes
    if operation == TRACK:
        return {"operation": "none"}  # seeing a record changed nothing in its system
    return {
        "operation": "update",
        "set": dict(before),
        "unset": sorted(name for name in after if name not in before),
        "expect": dict(after),
    }


class Entity(Aggregate):
    """One external record, as the ledger has seen it change."""

    moved_to: str | None = None  # the address it lives on at, after a move (older snapshots)

    def __init__(self, address: str) -> None:
        self.address = address
        self.fields: dict[str, Any] = {}
        self.exists = False
        self.last_fingerprint: str | None = None
        self.moved_to: str | None = None

    class Action(Aggregate.Event):
        """One workflow action on one record: what drove it, what it changed, how to undo it."""

        address: str
        operation: str
        before: dict[str, Any]
        after: dict[str, Any]
        compensation: dict[str, Any]
        inputs: dict[str, Any]
        workflow: str | None
        workflow_version: str | None
        batch: str
        actor: str | None
        trigger: str | None
        sources: list[str]
        effective_at: datetime | None
        fingerprint: str
        # The ledger's own links, set by the ledger only: an automation's inputs can hold keys
        # of any name without changing what the ledger believes.
        compensates: list[str]  # fingerprints of the actions a rollback's action undoes
        replays: list[str]  # fingerprints of the actions a replay's action redoes
        moved_to: str | None  # a move: where the record was created instead
        requested: str | None  # a create under a key the system chose: the key asked for

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Version 1 kept the links in ``inputs``: take out only those the ledger wrote
            (a move's target, a rollback's or replay's links in its own batch, the requested
            address of a create that names another key of the same collection)."""
            inputs = dict(state["inputs"])
            links = _no_links()
            if state["operation"] == MOVE and isinstance(inputs.get("moved_to"), str):
                links["moved_to"] = inputs.pop("moved_to")
            for verb, link in (("rollback", "compensates"), ("replay", "replays")):
                plan = inputs.get(verb)
                if state["batch"] == f"{verb}-{plan}" and isinstance(inputs.get(link), list):
                    links[link] = list(inputs.pop(link))
                    del inputs[verb]
            requested = inputs.get("requested")
            if state["operation"] == "create" and _elsewhere_in_collection(
                requested, state["address"]
            ):
                links["requested"] = inputs.pop("requested")
            state.update(links, inputs=inputs)

        def apply(self, entity: Entity) -> None:
            entity.fields, entity.exists = fold(
                entity.fields, self.operation, self.before, self.after
            )
            entity.last_fingerprint = self.fingerprint
            entity.moved_to = self.moved_to if self.operation == MOVE else None

        @property
        def delta(self) -> dict[str, tuple[Any, Any]]:
            """``{field: (before, after)}``, with ABSENT where a field did not exist."""
            names = sorted(set(self.before) | set(self.after))
            return {
                name: (self.before.get(name, ABSENT), self.after.get(name, ABSENT))
                for name in names
            }

    class FirstActionRecorded(Action, Aggregate.Created):
        """The first action the ledger saw on a record (which may be an update of an old one)."""

        def mutate(self, aggregate: Any) -> Any:
            """The record, created from this event (its ``__init__`` takes the address)."""
            assert aggregate is None
            return init_built(self, address=self.address)

    class ActionRecorded(Action):
        """Any later action on a record."""

    @classmethod
    def first(cls, address: Address, **action: Any) -> Entity:
        return cls._create(
            cls.FirstActionRecorded,
            id=address.entity_id,
            address=str(address),
            **{**_no_links(), **action},
        )

    def record(self, **action: Any) -> None:
        trigger_built(self, self.ActionRecorded, {**_no_links(), **action, "address": self.address})


def _no_links() -> dict[str, Any]:
    return {"compensates": [], "replays": [], "moved_to": None, "requested": None}


def _elsewhere_in_collection(other: Any, address: str) -> bool:
    """Whether `other` names another record of the same collection as `address`."""
    if not isinstance(other, str):
        return False
    mine, theirs = address.split("/", 2), other.split("/", 2)
    return len(theirs) == 3 and theirs[:2] == mine[:2] and theirs[2] not in ("", mine[2])


class Batch(Aggregate):
    """One run of a workflow: opened, then closed with the count of its actions."""

    def __init__(
        self,
        name: str,
        workflow: str | None,
        workflow_version: str | None,
        actor: str | None,
        trigger: str | None,
    ) -> None:
        self.name = name
        self.workflow = workflow
        self.workflow_version = workflow_version
        self.actor = actor
        self.trigger = trigger
        self.closed = False
        self.action_count: int | None = None

    class Opened(Aggregate.Created):
        name: str
        workflow: str | None
        workflow_version: str | None
        actor: str | None
        trigger: str | None

    class Closed(Aggregate.Event):
        action_count: int

        def apply(self, batch: Batch) -> None:
            batch.closed = True
            batch.action_count = self.action_count

    @classmethod
    def open(
        cls,
        name: str,
        *,
        workflow: str | None = None,
        workflow_version: str | None = None,
        actor: str | None = None,
        trigger: str | None = None,
    ) -> Batch:
        return cls._create(
            cls.Opened,
            id=batch_id(name),
            name=name,
            workflow=workflow,
            workflow_version=workflow_version,
            actor=actor,
            trigger=trigger,
        )

    def close(self, action_count: int) -> None:
        self.trigger_event(self.Closed, action_count=action_count)


class Checkpoint(Aggregate):
    """A name for a position in the global event log."""

    def __init__(self, name: str, position: int) -> None:
        self.name = name
        self.position = position

    class Named(Aggregate.Created):
        name: str
        position: int

    @classmethod
    def name_position(cls, name: str, position: int) -> Checkpoint:
        return cls._create(cls.Named, id=checkpoint_id(name), name=name, position=position)


def intent_id(fingerprint: str) -> UUID:
    return uuid5(NAMESPACE, f"intent:{fingerprint}")


class Intent(Aggregate):
    """A write about to be sent to a target, recorded before it is sent.

    The target write and the ledger append are in different stores, so a crash can fall
    between them. Declaring the intent first means no change reaches a target without a
    record in the ledger; settling it (applied, stale, failed, not applied) after the write,
    or at recovery by reading the target, means none is recorded twice or lost.
    """

    def __init__(self, fingerprint: str, address: str, write: dict[str, Any]) -> None:
        self.fingerprint = fingerprint
        self.address = address
        self.write = write
        self.outcome: str | None = None
        self.detail: dict[str, Any] = {}

    class Declared(Aggregate.Created):
        fingerprint: str
        address: str
        write: dict[str, Any]

    class Redeclared(Aggregate.Event):
        """A new attempt at an action whose earlier attempt was not applied."""

        write: dict[str, Any]

        def apply(self, intent: Intent) -> None:
            intent.write = self.write
            intent.outcome = None
            intent.detail = {}

    class Settled(Aggregate.Event):
        outcome: str  # "applied", "stale", "failed" or "not_applied"
        detail: dict[str, Any]

        def apply(self, intent: Intent) -> None:
            intent.outcome = self.outcome
            intent.detail = self.detail

    @classmethod
    def declare(cls, fingerprint: str, address: Address, write: dict[str, Any]) -> Intent:
        return cls._create(
            cls.Declared,
            id=intent_id(fingerprint),
            fingerprint=fingerprint,
            address=str(address),
            write=write,
        )

    def redeclare(self, write: dict[str, Any]) -> None:
        self.trigger_event(self.Redeclared, write=write)

    def settle(self, outcome: str, **detail: Any) -> None:
        self.trigger_event(self.Settled, outcome=outcome, detail=detail)
