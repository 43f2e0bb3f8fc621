"""A change as an automation submits it, checked field by field before anything is recorded.

Input shape (JSON object; one per line in a JSON Lines file)::

    {"entity": "crm/contacts/42", "op": "update",
     "set": {"lifecycle_stage": "customer"}, "unset": ["temp_note"],
     "before": {"lifecycle_stage": "lead"},            # optional; filled in if omitted
     "inputs": {...}, "workflow": "lead-sync", "workflow_version": "3",
     "batch": "run-7", "actor": "zapier", "trigger": "schedule",
     "sources": ["sheet/leads/17@2026-11-24T09:00:00Z"], "effective_at": "2026-11-24T09:12:00Z",
     "fingerprint": "optional idempotency key"}

Just over 400 lines: a change's parsing, checks and resolution against the ledger are one
concept (what an automation may submit and what it means).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from ledger.domain import MOVE, OPERATIONS, TRACK, Address, Entity, compensation_for
from ledger.encoding import decode_value
from ledger.errors import BeforeMismatch, FingerprintReused, InvalidChange
from ledger.points import parse_time
from ledger.transcoder import OrjsonTranscoder
from ledger.triggers import source_times
from ledger.values import ABSENT, check_value, parse_json, same
from ledger.views import ActionView

_KEYS = (
    "entity",
    "op",
    "set",
    "unset",
    "before",
    "inputs",
    "workflow",
    "workflow_version",
    "batch",
    "actor",
    "trigger",
    "sources",
    "effective_at",
    "fingerprint",
    "expected",
)
_TEXT_KEYS = ("workflow", "workflow_version", "batch", "actor", "trigger", "fingerprint")
_UNCHECKED = frozenset({*_TEXT_KEYS, "image", "effective_at"})
_CANONICAL = OrjsonTranscoder()


@dataclass(frozen=True)
class Change:
    """One requested action on one record, before the ledger has resolved it."""

    address: Address
    operation: str
    values: dict[str, Any] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    before: dict[str, Any] | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    workflow: str | None = None
    workflow_version: str | None = None
    batch: str | None = None
    actor: str | None = None
    trigger: str | None = None
    sources: tuple[str, ...] = ()
    effective_at: datetime | None = None
    fingerprint: str | None = None
    expected: dict[str, Any] | None = None
    # The whole record as an adapter read it just before writing (None: it did not exist);
    # ABSENT when the change did not go through an adapter.
    image: Any = ABSENT
    # The ledger's own links (see `Entity.Action`): set by rollbacks, replays and moves, never
    # read from an automation's input, so no input key can stand in for them.
    compensates: tuple[str, ...] = ()
    replays: tuple[str, ...] = ()
    moved_to: str | None = None
    requested: str | None = None

    def __post_init__(self) -> None:
        _check_shape(self)

    @classmethod
    def from_mapping(cls, data: Any) -> Change:
        """Build a change from a parsed JSON object, naming the first field that is wrong."""
        if not isinstance(data, dict):
            raise InvalidChange(f"a change must be a JSON object, not {type(data).__name__}")
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise InvalidChange(
                f"unknown field {unknown[0]!r}; expected some of: {', '.join(_KEYS)}",
                field=unknown[0],
            )
        for required in ("entity", "op"):
            if required not in data:
                raise InvalidChange(f"missing required field {required!r}", field=required)
        entity = _text(data, "entity")
        assert entity is not None
        operation = _text(data, "op") or ""
        if operation not in OPERATIONS:  # a move is the ledger's to record, not submitted
            raise InvalidChange(
                f"{entity}: op {operation!r} is not one of {', '.join(OPERATIONS)}", field="op"
            )
        effective = _text(data, "effective_at")
        texts: dict[str, Any] = {key: _text(data, key) for key in _TEXT_KEYS}
        return cls(
            address=Address.parse(entity),
            operation=operation,
            values=_fields(data, "set"),
            unset=tuple(_text_list(data, "unset")),
            before=_fields(data, "before") if "before" in data else None,
            expected=_fields(data, "expected") if "expected" in data else None,
            inputs=_fields(data, "inputs"),
            sources=tuple(_text_list(data, "sources")),
            effective_at=parse_time(effective, "effective_at") if effective else None,
            **texts,
        )

    @classmethod
    def from_json(cls, text: str | bytes, line: int | None = None) -> Change:
        try:
            return cls.from_mapping(parse_json(text, where="change"))
        except InvalidChange as error:
            raise (error.at_line(line) if line is not None else error) from None

    def with_defaults(self, **defaults: Any) -> Change:
        """Fill the batch and workflow fields this change left empty."""
        filled = {key: value for key, value in defaults.items() if getattr(self, key) is None}
        if not filled:
            return self
        return self.evolve(**filled)

    def evolve(self, **fields: Any) -> Change:
        """A copy with some of the fields that need no checking replaced (the image, the
        fingerprint, the batch and workflow details): a bulk run copies each change several
        times, and checking its values again each time was a fifth of a rollback's time."""
        unchecked = sorted(set(fields) - _UNCHECKED)
        if unchecked:
            raise TypeError(f"evolve() cannot replace {unchecked[0]!r}; use dataclasses.replace")
        copy = object.__new__(Change)
        copy.__dict__.update({**self.__dict__, **fields})
        return copy

    def fingerprint_in(self, batch: str, based_on: int) -> str:
        """The idempotency key: the given one, or a hash of what the change does, in which
        batch, to which version of the record (so a record changed back and forth within
        one batch is not mistaken for a retry)."""
        return self.fingerprint or self.content_hash(batch=batch, based_on=based_on)

    def content_hash(self, **context: Any) -> str:
        """A hash of what the change does, with some context (its batch, its occurrence…)."""
        identity = {
            **context,
            "entity": str(self.address),
            "op": self.operation,
            "set": self.values,
            "unset": sorted(self.unset),
            "before": self.before,
            "expected": self.expected,
            "inputs": self.inputs,
        }
        # Only present links enter the hash, so the fingerprints of changes without any (every
        # change an automation submits) stay what they were. When a change took effect is
        # part of what it says: the same values effective at another time (a backdated
        # correction) are another change, not a retry of the first.
        identity.update(
            (name, value)
            for name, value in (
                ("compensates", self.compensates),
                ("replays", self.replays),
                ("moved_to", self.moved_to),
                ("requested", self.requested),
                ("effective_at", self.effective_at),
            )
            if value
        )
        encoded = orjson.dumps(_CANONICAL._to_json(identity), option=orjson.OPT_SORT_KEYS)
        return "sha256:" + hashlib.sha256(encoded).hexdigest()


def _check_shape(change: Change) -> None:
    entity = str(change.address)
    if change.operation == MOVE:
        _check_move(change)
    elif change.moved_to is not None:
        raise InvalidChange(f"{entity}: only a move has moved_to", field="moved_to")
    elif change.operation == TRACK:
        if change.unset or change.before:
            raise InvalidChange(f"{entity}: a track takes no 'unset' or 'before'", field="set")
    elif change.operation not in OPERATIONS:
        raise InvalidChange(
            f"{entity}: op {change.operation!r} is not one of {', '.join(OPERATIONS)}", field="op"
        )
    if change.operation == "update" and not change.values and not change.unset:
        raise InvalidChange(f"{entity}: an update needs 'set' or 'unset'", field="set")
    if change.operation == "delete" and (change.values or change.unset):
        raise InvalidChange(f"{entity}: a delete takes no 'set' or 'unset'", field="set")
    if change.operation == "create" and change.unset:
        raise InvalidChange(f"{entity}: a create takes no 'unset'", field="unset")
    overlap = sorted(set(change.values) & set(change.unset))
    if overlap:
        raise InvalidChange(f"{entity}: field {overlap[0]!r} is both set and unset", field="unset")
    for name in [*change.values, *change.unset, *(change.before or {})]:
        if not name:
            raise InvalidChange(f"{entity}: field names must not be empty", field="set")
    check_value(change.values, "set")
    check_value(change.before or {}, "before")
    check_value(change.inputs, "inputs")
    check_value(change.expected or {}, "expected", absent_fields=True)
    source_times(change.sources)  # a source's time (NAME@TIME) is refused now if malformed


def _check_move(change: Change) -> None:
    """A move names where the record now lives: another key of the same collection."""
    entity = str(change.address)
    target = change.moved_to
    if target is None:
        raise InvalidChange(f"{entity}: a move needs moved_to", field="moved_to")
    moved = Address.parse(target)
    if (moved.system, moved.collection) != (change.address.system, change.address.collection):
        raise InvalidChange(
            f"{entity}: a move stays in its collection, not {target!r}", field="moved_to"
        )
    if change.values or change.unset or change.before:
        raise InvalidChange(f"{entity}: a move takes no 'set', 'unset' or 'before'", field="set")


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidChange(f"field {key!r} must be non-empty text, got {value!r}", field=key)
    return value


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise InvalidChange(
            f"field {key!r} must be an object of field names to values, got {value!r}", field=key
        )
    return value


def _fields(data: dict[str, Any], key: str) -> dict[str, Any]:
    """An object of field names to values in the edge encoding (`ledger.encoding`)."""
    return {
        name: decode_value(value, f"{key}.{name}") for name, value in _object(data, key).items()
    }


def _text_list(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidChange(f"field {key!r} must be a list of text, got {value!r}", field=key)
    return value


def resolve(change: Change, entity: Entity | None) -> dict[str, Any]:
    """The before- and after-values and the compensation of a change against what the
    ledger knows of the record; refuses a change that contradicts it or cannot be undone."""
    name = str(change.address)
    given = change.before or {}
    if change.operation == "create":
        if entity is not None and entity.exists:
            raise InvalidChange(f"{name} already exists; record an update instead", field="op")
        if given:
            raise InvalidChange(f"{name}: a create has no before-values", field="before")
        return _action(change, {}, dict(change.values))
    if change.operation == MOVE:
        if entity is not None and entity.exists:
            raise InvalidChange(f"{name} exists, so it cannot have moved", field="op")
        return _action(change, {}, {})
    if change.operation == TRACK:
        known = entity.fields if entity is not None and entity.exists else {}
        return _action(change, dict(known), dict(change.values))
    touched = [*change.values, *change.unset]
    if entity is None:
        before = _before_of_new_record(change, name, touched, given)
    elif not entity.exists:
        raise InvalidChange(f"{name} was deleted; record a create to bring it back", field="op")
    else:
        current = entity.fields
        for field_name, value in given.items():
            if not same(value, current.get(field_name, ABSENT)):
                raise BeforeMismatch(name, field_name, current.get(field_name, ABSENT), value)
        if change.operation == "delete":
            touched = list(current)
        before = {f: current[f] for f in touched if f in current}
    after = {} if change.operation == "delete" else dict(change.values)
    return _action(change, before, after)


OBSERVED_BATCH = "observed"


def observed_drift(change: Change, entity: Entity | None) -> Change | None:
    """An outside edit the target shows but the ledger does not know, as a change to adopt
    (actor ``external``) before recording the workflow's own action on that record."""
    image = change.image
    if image is ABSENT:
        return None
    if entity is None:
        # First seen: the whole record as the system holds it, once, so that every later
        # view of it (as of any point, a rollback's "before", reconciliation) is whole.
        if image is None:
            return None
        return Change(
            change.address,
            TRACK,
            values=dict(image),
            batch=OBSERVED_BATCH,
            actor="external",
            trigger="first seen",
        )
    seen: dict[str, Any] = {"batch": OBSERVED_BATCH, "actor": "external", "trigger": "observed"}
    if not entity.exists:
        return Change(change.address, "create", values=dict(image), **seen) if image else None
    if image is None:
        return Change(change.address, "delete", **seen)
    # The whole record is compared, not only the fields this change touches: an outside edit
    # of another field made before this action must be history before it, or a later
    # rollback would take it for a change made since, and under `skip` leave the record.
    touched = sorted(set(entity.fields) | set(image))
    differing = [f for f in touched if not same(entity.fields.get(f, ABSENT), image.get(f, ABSENT))]
    if not differing:
        return None
    return Change(
        change.address,
        "update",
        values={f: image[f] for f in differing if f in image},
        unset=tuple(f for f in differing if f not in image),
        **seen,
    )


def _before_of_new_record(
    change: Change, name: str, touched: list[str], given: dict[str, Any]
) -> dict[str, Any]:
    """A record the ledger has never seen: its before-image must come with the change."""
    if change.operation == "delete":
        if not given:
            raise InvalidChange(
                f"{name} is new to the ledger; give 'before' with the values the record "
                "held when it was deleted, so the delete can be undone",
                field="before",
            )
        return dict(given)
    missing = [f for f in touched if f not in given]
    if missing:
        raise InvalidChange(
            f"{name} is new to the ledger, so its before-values are unknown; give 'before' "
            f"for {', '.join(repr(f) for f in missing)} (what the record held before the change)",
            field="before",
        )
    return {f: given[f] for f in touched}


def _action(change: Change, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        "operation": change.operation,
        "before": before,
        "after": after,
        "compensation": compensation_for(change.operation, before, after),
    }


def reused_fingerprint(change: Change, action: ActionView) -> FingerprintReused | None:
    """The error for a change whose fingerprint already names an `action` that does something
    else; None for a true retry. What the change does is compared (record — or the key it was
    requested at, for a record the system created elsewhere — operation, values set and
    unset), not its inputs or batch, which a retry may word differently."""
    name = str(change.address)
    operation, before, after = action.operation, action.before, action.after
    if name not in (action.entity, action.requested):
        differs = "record"
    elif operation != change.operation:
        differs = "operation"
    elif operation != "delete" and not same(after, change.values):
        differs = "values"
    elif operation == "update" and {f for f in before if f not in after} != {
        f for f in change.unset if f in before
    }:
        differs = "unset fields"
    else:
        return None
    return FingerprintReused(
        f"fingerprint {change.fingerprint!r} already names the {operation} of {action.entity}; "
        f"this {change.operation} of {name} differs in its {differs}: give a new change a "
        "fingerprint of its own",
        field="fingerprint",
    )


def line_fingerprint(batch: str, line: int, raw: bytes) -> str:
    """A file's line is one action: re-importing the file into the same batch records nothing."""
    digest = hashlib.sha256(f"{batch}\n{line}\n".encode() + raw.strip()).hexdigest()
    return f"sha256:{digest}"


def iter_changes(lines: Iterable[bytes]) -> Iterator[Change]:
    """Parse JSON Lines into changes, naming the line of the first malformed one."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield Change.from_json(line, line=number)
