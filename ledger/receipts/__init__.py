"""Receipts: everything needed to explain and repair one recorded action, from its events.

A receipt is derived, not stored: the action's event, the intent a run declared before its
write (`Intent`), the record's later history, the lane's events, the batch's run record and
the lane row are read back and each check is recomputed from those recorded facts
(docs/receipts.md says which fact each part comes from). Nothing is written. The parts:
`model` (the frozen data), `lookup` (naming an action), `checks` (and the review),
`correction` (the correction path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from eventsourcing.application import AggregateNotFoundError

from ledger.application import Ledger
from ledger.changes import Change
from ledger.domain import Address, Entity, Intent, intent_id
from ledger.errors import InvalidChange
from ledger.evidence import prove
from ledger.lanes import LaneConfig
from ledger.receipts.checks import (
    contract_check,
    guard_checks,
    lane_checks,
    recorded_checks,
    review_of,
)
from ledger.receipts.correction import correction_path
from ledger.receipts.lookup import find_action
from ledger.receipts.model import (
    ActionReceipt,
    Check,
    Correction,
    CorrectionPath,
    LaterEdit,
    ProposedChange,
    Review,
    SourceRecord,
)
from ledger.rollback.model import Contract
from ledger.rollback.planner import state_at
from ledger.settlement import compare_and_set
from ledger.store import Cutoff, from_micros
from ledger.triggers import source_times
from ledger.values import ABSENT
from ledger.views import ActionView

__all__ = [
    "ActionReceipt",
    "Check",
    "Correction",
    "CorrectionPath",
    "LaterEdit",
    "ProposedChange",
    "Review",
    "SourceRecord",
    "find_action",
    "receipt",
]


def receipt(
    ledger: Ledger,
    action: str,
    *,
    lanes: Mapping[str, LaneConfig] | None = None,
    contracts: Mapping[tuple[str, str], Contract] | None = None,
) -> ActionReceipt:
    """The receipt of one action (named as `find_action` reads it). ``lanes`` are the lane
    rows (`load_lanes`): the workflow's row picks the fields shown first and the guards
    checked; ``contracts`` the rollback contracts, for the correction path."""
    view = find_action(ledger, action)
    address = Address.parse(view.entity)
    history = [cast(Entity.Action, event) for event in ledger.events.get(address.entity_id)]
    config = (lanes or {}).get(view.workflow or "")
    proposed = _proposed(ledger, view)
    checks = [
        *recorded_checks(history, view, proposed),
        *lane_checks(ledger, view, proposed, config),
    ]
    declared = source_times(view.sources)
    sources = tuple(_source(ledger, name, view, declared) for name in view.sources)
    if config is not None:
        checks += guard_checks(view, config.triggers, sources)
    contract = (contracts or {}).get((address.system, address.collection))
    if contract is not None:
        checks.append(contract_check(view, history, contract))
    return ActionReceipt(
        action=view,
        highlight=_highlight(history, view, () if config is None else config.receipt_fields),
        sources=sources,
        proposed=proposed,
        checks=tuple(checks),
        review=review_of(ledger, view),
        correction=correction_path(view, history, contract),
        lane_configured=config is not None,
        proof=prove(ledger, view),
    )


def _highlight(
    history: Sequence[Entity.Action], view: ActionView, names: Sequence[str]
) -> dict[str, tuple[Any, Any]]:
    before, _ = state_at(history, view.version - 1)
    after, _ = state_at(history, view.version)
    return {name: (before.get(name, ABSENT), after.get(name, ABSENT)) for name in names}


def _proposed(ledger: Ledger, view: ActionView) -> ProposedChange | None:
    """The intent declared before the write (applied actions only), read from its events."""
    try:
        intent = cast(Intent, ledger.repository.get(intent_id(view.fingerprint)))
    except AggregateNotFoundError:
        return None
    events = list(ledger.events.get(intent.id))
    declared = [e for e in events if isinstance(e, Intent.Declared | Intent.Redeclared)]
    settled = [e for e in events if isinstance(e, Intent.Settled)]
    write = intent.write
    change = Change(
        Address.parse(intent.address),
        write["operation"],
        values=write["values"],
        unset=tuple(write["unset"]),
        expected=write["expected"],
        image=write["image"],
    )
    return ProposedChange(
        operation=write["operation"],
        values=dict(write["values"]),
        unset=tuple(write["unset"]),
        expected=compare_and_set(change).expected,  # the one rule settlement writes with
        declared_at=declared[-1].timestamp,
        attempts=len(declared),
        outcome=intent.outcome,
        settled_at=settled[-1].timestamp if settled else None,
    )


def _source(
    ledger: Ledger, source: str, view: ActionView, declared: dict[str, datetime]
) -> SourceRecord:
    """A source with the time declared for it (``NAME@TIME``) and, if it is a record the
    ledger knows, the version the ledger held when the action was recorded."""
    name = next((n for n in declared if source.startswith(f"{n}@")), source)
    at = declared.get(name)
    try:
        address = Address.parse(name)
    except InvalidChange:
        return SourceRecord(name, declared_at=at)
    cutoff = Cutoff("position", view.position or 0)
    version, _ = ledger.index.versions_until(address.entity_id, cutoff)
    if version == 0:
        return SourceRecord(name, declared_at=at)
    _, recorded = ledger.index.position_of(address.entity_id, version)
    return SourceRecord(name, version, from_micros(recorded), at)
