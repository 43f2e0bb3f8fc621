"""Checking a plan against the ledger's history before anything is applied.

A plan is data that may have been edited since it was made (its seal only proves that the file
is the one saved): only the ledger's own history is trusted. Each compensation must be one the
pure planner's reading of the record's history allows.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

from ledger.application import Ledger
from ledger.domain import Address, Entity
from ledger.errors import InvalidChange
from ledger.rollback.model import (
    DIRECTIONS,
    MISSING_PARENT,
    POLICIES,
    Compensation,
    Contract,
    ScopedAction,
)
from ledger.rollback.plan import RollbackPlan
from ledger.rollback.planner import later_changes, read_history
from ledger.rollback.planning import (
    HISTORY_PAGE,
    InScope,
    ScopeRecord,
    cuts,
    read_histories,
    scope_filter,
    scope_workflows,
    vouched,
)
from ledger.rollback.runbook import show
from ledger.values import ABSENT, same


def check_against_history(
    ledger: Ledger,
    rollback: RollbackPlan,
    contracts: dict[tuple[str, str], Contract] | None = None,
) -> tuple[str, ...]:
    """Refuse a plan (nothing applied) unless every compensation reverses actions of the plan's
    scope on its record, with exactly the values the ledger's history gives at the plan's
    position, within what the policy allows. Target-side facts the history cannot know (drift
    read while planning, what `force` expects the target to hold) can only make a compensation
    smaller or its compare-and-set stricter, never write values history does not give.

    Returns the workflows whose actions the compensations reverse, read from history (never
    from the plan): the lanes whose approval applying it needs. The plan object
    `plan_rollback` returned, applied as it was returned with the same contracts, was read
    from this very history: its reading is reused (`vouched`), not repeated."""
    allowed: tuple[tuple[str, str, tuple[str, ...]], ...] = (
        ("policy", rollback.policy, POLICIES),
        ("direction", rollback.direction, DIRECTIONS),
        ("missing_parent", rollback.missing_parent, MISSING_PARENT),
    )
    for name, value, choices in allowed:
        if value not in choices:
            raise InvalidChange(
                f"{rollback.verb} plan {rollback.id}: {name} {value!r} is not one of "
                f"{', '.join(choices)}; plan again",
                field=name,
            )
    known = vouched(rollback, ledger, contracts)
    if known is not None:  # the plan `plan_rollback` just made from this history, as made
        return known
    within = scope_filter(ledger, rollback.scope, rollback.position)
    cut = cuts(ledger, rollback.position)
    # A compensation is named by its record's newest action in the scope, one per record:
    # a position met twice is a record planned twice (one bit per log position).
    met = bytearray(rollback.position // 8 + 1)
    workflows: set[str] = set()
    compensations = rollback.compensations
    for start in range(0, len(compensations), HISTORY_PAGE):  # a page of records at a time
        page = compensations[start : start + HISTORY_PAGE]
        records = _scope_records(ledger, within, page)
        scoped = InScope(ledger, within, list(records.values()))
        wanted = list({record.entity_id: None for record in records.values()})
        found = dict(read_histories(ledger, wanted, cut))
        for compensation in page:
            record = records.get(compensation.entity)
            if record is None:
                raise _refused(
                    rollback,
                    compensation.entity,
                    f"it has no action in the scope ({rollback.scope.describe()})",
                )
            address = record.address
            contract = (contracts or {}).get((address.system, address.collection), Contract())
            history = found[record.entity_id]
            problem = disagreement(
                compensation, history, record.actions, scoped, rollback, contract
            )
            at = compensation.position
            if problem is None and met[at >> 3] & (1 << (at & 7)):
                problem = "it is planned twice"
            if problem:
                raise _refused(rollback, compensation.entity, problem)
            met[at >> 3] |= 1 << (at & 7)
            workflows.update(scope_workflows(history, set(compensation.compensates)))
    return tuple(sorted(workflows))


def _scope_records(
    ledger: Ledger, within: dict[str, Any], page: Sequence[Compensation]
) -> dict[str, ScopeRecord]:
    """The scope's actions on a page of compensations' records, by the records' names."""
    ids = set()
    for compensation in page:
        try:
            ids.add(Address.parse(compensation.entity).entity_id)
        except InvalidChange:
            continue  # not a record's name: no action in the scope
    records: dict[str, ScopeRecord] = {}
    for row in ledger.index.actions_matching(**within, entity_ids=sorted(ids)):
        address = Address(row.system, row.collection, row.key)
        record = records.setdefault(str(address), ScopeRecord(row.entity_id, address, []))
        record.actions.append(ScopedAction(row.version, row.position, row.fingerprint))
    return records


def _refused(rollback: RollbackPlan, entity: str, problem: str) -> InvalidChange:
    return InvalidChange(
        f"{rollback.verb} plan {rollback.id} does not match the ledger's history: {entity}: "
        f"{problem}; nothing was applied. Plan again (`ledger {rollback.verb} plan`)",
        field="plan",
    )


def disagreement(
    c: Compensation,
    history: Sequence[Entity.Action],
    actions: Sequence[ScopedAction],
    scoped: Container[str],
    rollback: RollbackPlan,
    contract: Contract,
) -> str | None:
    """Why a compensation is not one the history allows (None: it is)."""
    record = read_history(history, actions, scoped, rollback.direction)
    policy = rollback.policy
    if c.compensates != tuple(fingerprint for _, _, fingerprint in reversed(actions)):
        return "it names other actions than the scope's actions on this record"
    if c.position != max(row_position for _, row_position, _ in actions):
        return "its position is not that of the scope's newest action on it"
    if record.done:
        return f"history shows the {rollback.verb} of it done already"
    if contract.repair is not None:
        return f"its collection's rollback contract makes it a manual repair ({contract.repair})"
    restorable = set(record.first_touch) - set(contract.protected)
    if policy != "force":
        conflicted, _ = later_changes(record, history, policy in ("skip", "abort"))
        if conflicted and (policy != "fields" or "(record)" in conflicted):
            return f"others changed it since ({', '.join(sorted(conflicted))}): a conflict"
        restorable -= conflicted
    before, now = record.before, record.now
    if c.operation == "delete":
        if before is not None:
            return "history says it existed before, so it is restored, not deleted"
        if c.values or c.unset:
            return "a delete writes no fields"
    elif c.operation == "create":
        if before is None:
            return "history says it did not exist before, so it is not re-created"
        if c.unset or c.expected:
            return "a re-create expects the record to be absent, and unsets nothing"
        for name in sorted(set(before) | set(c.values)):
            if not same(c.values.get(name, ABSENT), before.get(name, ABSENT)):
                return _differs(name, c.values.get(name, ABSENT), before.get(name, ABSENT))
    elif c.operation == "update":
        if before is None:
            return "history says it did not exist before, so it is deleted, not restored"
        for name in sorted(c.values):
            if name not in restorable:
                return f"field {name!r} is not one the {rollback.verb} may restore"
            if not same(c.values[name], before.get(name, ABSENT)):
                return _differs(name, c.values[name], before.get(name, ABSENT))
        for name in c.unset:
            if name not in restorable or name in before:
                return f"field {name!r} is not one the {rollback.verb} removes"
    else:
        return f"operation {c.operation!r} is not update, create or delete"
    if c.operation == "create":
        return None
    # Compare-and-set: every field written (every known field, for skip and for a delete) is
    # expected, and, unless forced, expected to hold what the ledger says it holds.
    needed = {*c.values, *c.unset}
    if policy in ("skip", "abort"):
        needed |= record.known
    elif policy == "fields" and c.operation == "delete":
        needed |= set(now or ())
    missing = sorted(needed - set(c.expected))
    if missing:
        return f"field {missing[0]!r} is written without checking what the target holds"
    if policy == "force":
        return None
    if now is None:
        return "history says it does not exist now"
    for name in sorted(set(c.expected) & record.known):
        if not same(c.expected[name], now.get(name, ABSENT)):
            return (
                f"field {name!r}: the plan expects the target to hold "
                f"{show(c.expected[name])}, the ledger says {show(now.get(name, ABSENT))}"
            )
    return None


def _differs(name: str, planned: Any, recorded: Any) -> str:
    return f"field {name!r}: the plan writes {show(planned)}, history says {show(recorded)}"
