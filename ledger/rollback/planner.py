"""The pure planning of one record's rollback: from its history and its target image to a plan.

No I/O: a record's history is a list of `Entity.Action` events (up to the plan's position), the
scope's actions on it are `ScopedAction`s, the target image is the record as read (None: absent).
`plan_entity` gives the compensation and/or conflict; `read_history` and `later_changes` are
shared with the check of a saved plan (`ledger.rollback.checks`).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import Any, cast

from ledger.changes import OBSERVED_BATCH
from ledger.domain import MOVE, TRACK, Entity, fold
from ledger.rollback.model import Compensation, Conflict, Direction, Policy, ScopedAction
from ledger.values import ABSENT, same

Image = dict[str, Any] | None  # a record's fields (None: the record does not exist)


@dataclass(frozen=True)
class RecordHistory:
    """What a record's history (up to the plan's position) says about reversing the scope."""

    before: Image  # the state to return to (None: the record should not exist)
    now: Image  # the ledger's projection (None: the record does not exist)
    first_touch: dict[str, int]  # each field the scope touched: the version that first did
    later: list[Entity.Action]  # actions by others since the scope acted on the record
    known: set[str]  # every field the ledger knows the value (or the absence) of
    done: bool  # already reversed by a rollback (or replay) of this scope


@dataclass(frozen=True)
class EntityPlan:
    """What the plan does with one record: nothing (done before), or a compensation and/or a
    conflict (both None: the record already holds the state to return to)."""

    compensation: Compensation | None = None
    conflict: Conflict | None = None
    done: bool = False  # reversed before by a rollback (or replay) of this scope


def state_at(history: Sequence[Entity.Action], upto: int) -> tuple[dict[str, Any], bool]:
    """A record's fields after its first `upto` actions, and whether it exists. Before the first
    action on a record that existed before the ledger saw it (an update or delete first), the
    record existed and its touched fields held that action's before-values; before a first
    `move` (a create the system stored under another key) it did not exist."""
    if upto == 0 and history and history[0].operation not in ("create", MOVE):
        return dict(history[0].before), True
    fields: dict[str, Any] = {}
    exists = False
    for event in history[:upto]:
        fields, exists = fold(fields, event.operation, event.before, event.after)
    return fields, exists


def before_each_touch(
    history: Sequence[Entity.Action], first_touch: dict[str, int]
) -> dict[str, Any]:
    """Each field's value (ABSENT: none) just before the version that first touched it: that
    action's own before-image, which also knows fields of a record the ledger first saw
    partially (an update, then a delete carrying the whole record)."""
    return {
        name: history[version - 1].before.get(name, ABSENT) for name, version in first_touch.items()
    }


def known_fields(history: Sequence[Entity.Action]) -> set[str]:
    """Every field any action on the record named: the fields whose value the ledger knows."""
    return {name for event in history for name in (*event.before, *event.after)}


def read_history(
    history: Sequence[Entity.Action],
    actions: Sequence[ScopedAction],
    scoped: Container[str],
    direction: Direction,
) -> RecordHistory:
    """Undo returns each field the scope touched to its value before the scope first touched
    it; redo to the state the scope's latest action left. The scope's own rollbacks and
    replays are not someone else's later actions."""
    versions = {version for version, _, _ in actions}
    earliest, latest = min(versions), max(versions)
    mine = "compensates" if direction == "undo" else "replays"
    later = [
        e
        for e in history[earliest if direction == "undo" else latest :]
        if e.originator_version not in versions
        and not any(f in scoped for f in (*e.compensates, *e.replays))
    ]
    # Done when, after the scope's latest action, a rollback (or replay) of this scope covered
    # every one of its actions here and no replay (or rollback) undid that since; edits by
    # others afterwards do not make it undone.
    theirs = "replays" if direction == "undo" else "compensates"
    covered: set[str] = set()
    for event in history[latest:]:
        covered |= set(getattr(event, mine))
        covered -= set(getattr(event, theirs))
    done = {fingerprint for _, _, fingerprint in actions} <= covered
    first_touch: dict[str, int] = {}
    for event in history:
        if event.originator_version in versions:
            for name in (*event.before, *event.after):
                first_touch.setdefault(name, event.originator_version)
    if direction == "undo":
        before, existed = state_at(history, earliest - 1)
        if existed:
            for name, value in before_each_touch(history, first_touch).items():
                if value is ABSENT:
                    before.pop(name, None)
                else:
                    before[name] = value
    else:
        before, existed = state_at(history, latest)
        first_touch = dict.fromkeys(first_touch, latest)
    now, exists = state_at(history, len(history))
    return RecordHistory(
        before if existed else None,
        now if exists else None,
        first_touch,
        later,
        known_fields(history),
        done,
    )


def later_changes(
    record: RecordHistory, history: Sequence[Entity.Action], whole_record: bool
) -> tuple[set[str], list[dict[str, Any]]]:
    """The fields others changed since the scope acted, with who did it: any field (and the
    record's existence) when the policy is record-level, else the scope's own fields after the
    scope first touched each."""
    conflicted: set[str] = set()
    competing: list[dict[str, Any]] = []
    touched = set(record.first_touch)
    for event in record.later:
        if event.operation == TRACK:
            # Seeing the record whole: only a value it contradicts would be a change (tracking
            # adopts none; fields it shows for the first time are learned).
            names = {
                n for n in event.before if not same(event.before[n], event.after.get(n, ABSENT))
            }
            if not names:
                continue
        else:
            names = {*event.before, *event.after} - learned(history, event)
        if event.operation not in ("update", TRACK):
            hit = (names if whole_record else touched) | {"(record)"}
        elif whole_record:
            hit = names
        else:
            hit = {
                n
                for n in names
                if n in record.first_touch and event.originator_version > record.first_touch[n]
            }
        conflicted |= hit
        competing += [
            {
                "field": name,
                "value": event.after.get(name, ABSENT),
                "by": event.actor or event.batch,
                "batch": event.batch,
                "version": event.originator_version,
            }
            for name in sorted(hit)
        ]
    return conflicted, competing


def learned(history: Sequence[Entity.Action], event: Entity.Action) -> set[str]:
    """Fields an outside edit adopted when a run first read them (the ledger had never seen
    them, so it cannot tell when they got their values): learning, not a change since."""
    if event.batch != OBSERVED_BATCH or event.operation != "update":
        return set()
    return set(event.after) - known_fields(history[: event.originator_version - 1])


def drift(ledger_now: Image, target: Image, fields: set[str]) -> set[str]:
    """The fields (or "(record)", its existence) where the target differs from the ledger."""
    if (ledger_now is None) != (target is None):
        return {"(record)"}
    if ledger_now is None or target is None:
        return set()
    return {
        name for name in fields if not same(ledger_now.get(name, ABSENT), target.get(name, ABSENT))
    }


def plan_entity(
    entity: str,
    history: Sequence[Entity.Action],
    actions: Sequence[ScopedAction],
    scoped: Container[str],
    image: Image,
    *,
    policy: Policy,
    direction: Direction = "undo",
    protected: tuple[str, ...] = (),
) -> EntityPlan:
    """The compensation and/or conflict for one record (or done, if it was reversed before).

    Under ``skip`` and ``abort`` a conflict is record-level: any later action by others since
    the scope acted on the record, or drift in any field the ledger knows; under ``fields``
    and ``force`` only changes to the scope's own fields, after the scope first touched each,
    compete with it. ``protected`` fields (the collection's contract) are never restored."""
    record = read_history(history, actions, scoped, direction)
    if record.done:
        return EntityPlan(done=True)
    touched = set(record.first_touch)
    whole_record = policy in ("skip", "abort")
    conflicted, competing = later_changes(record, history, whole_record)
    reasons = ["later action"] if conflicted else []
    # The target may have drifted too: in any field the ledger knows (record-level), or in the
    # scope's own fields.
    known = record.known if whole_record else touched
    differing = drift(record.now, image, known) - conflicted
    if differing:
        conflicted |= differing
        reasons.append("drift in the target")
        competing += [
            {"field": name, "value": (image or {}).get(name, ABSENT), "by": "outside the ledger"}
            for name in sorted(differing)
        ]
    conflict = (
        Conflict(entity, " and ".join(reasons), tuple(sorted(conflicted)), tuple(competing))
        if conflicted
        else None
    )
    restorable = touched - set(protected)
    if conflicted and whole_record:
        return EntityPlan(conflict=conflict)
    if conflicted and policy == "fields":
        if "(record)" in conflicted:
            return EntityPlan(conflict=conflict)
        restorable -= conflicted
    current = image if policy == "force" and conflicted else record.now
    # Under skip, the record must still hold every field as planning saw it when applied.
    guard = whole(image, known) if whole_record and image is not None else {}
    planned = compensation(entity, record.before, current, restorable, actions, guard)
    return EntityPlan(planned, conflict)


def whole(image: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """The record as read, with the fields the ledger knows absent marked so."""
    return {name: image.get(name, ABSENT) for name in sorted(set(image) | known)}


def compensation(
    entity: str,
    before: Image,
    current: Image,
    fields: set[str],
    actions: Sequence[ScopedAction],
    guard: dict[str, Any],
) -> Compensation | None:
    """The net write; ``guard`` adds fields the target must still hold, unwritten ones too."""
    compensates = tuple(fingerprint for _, _, fingerprint in reversed(actions))
    position = max(row_position for _, row_position, _ in actions)
    if before is None and current is None:
        return None
    if before is None:
        return Compensation(
            entity, "delete", {}, (), {**guard, **cast(dict, current)}, compensates, position
        )
    if current is None:
        return Compensation(entity, "create", dict(before), (), {}, compensates, position)
    values = {
        f: before[f]
        for f in sorted(fields)
        if f in before and not same(before[f], current.get(f, ABSENT))
    }
    unset = tuple(sorted(f for f in fields if f not in before and f in current))
    if not values and not unset:
        return None
    expected = {**guard, **{f: current.get(f, ABSENT) for f in [*values, *unset]}}
    return Compensation(entity, "update", values, unset, expected, compensates, position)
