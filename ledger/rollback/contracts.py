"""Rollback contracts (``ledger.toml``): the records a rollback leaves to a person, and why.

A collection's contract can make its actions a manual repair, put old actions outside the
rollback window, or protect fields: each becomes a `FollowUp` in the plan. Pure functions over
a record's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ledger.domain import Entity
from ledger.rollback.model import Contract, FollowUp, ScopedAction


def held_by_contract(
    entity: str,
    history: Sequence[Entity.Action],
    actions: Sequence[ScopedAction],
    contract: Contract,
    now: datetime,
) -> FollowUp | None:
    """A follow-up instead of a compensation, when the collection's contract says so."""
    if contract.repair is not None:
        return FollowUp(
            entity,
            contract.repair,
            "not reversible by a write (declared in the rollback contract)",
            contract.owner,
        )
    if contract.window is not None:
        versions = {version for version, _, _ in actions}
        oldest = min(e.timestamp for e in history if e.originator_version in versions)
        if now - oldest > contract.window:
            return FollowUp(
                entity,
                "review",
                f"changed {oldest.isoformat()}, outside the rollback window ({contract.window})",
                contract.owner,
            )
    return None


def protected_kept(
    entity: str,
    history: Sequence[Entity.Action],
    actions: Sequence[ScopedAction],
    contract: Contract,
) -> FollowUp | None:
    """A review follow-up naming the protected fields the scope changed, which stay as they are."""
    if not contract.protected:
        return None
    in_scope = {version for version, _, _ in actions}
    changed = {
        f for e in history if e.originator_version in in_scope for f in (*e.before, *e.after)
    }
    kept = sorted(changed & set(contract.protected))
    if not kept:
        return None
    return FollowUp(
        entity, "review", f"protected field(s) {', '.join(kept)} left as they are", contract.owner
    )
