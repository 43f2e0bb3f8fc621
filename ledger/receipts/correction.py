"""A receipt's correction path: how the action is undone, whether it was, what stands in the way.

Read as the rollback planner reads a record's history (`read_history`, `later_changes`), with
this one action as the scope, so a receipt and a rollback never disagree on what is in the way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from ledger.domain import TRACK, Entity
from ledger.receipts.checks import follow_up
from ledger.receipts.model import Correction, CorrectionPath, LaterEdit, Standing
from ledger.rollback.model import Contract, ScopedAction
from ledger.rollback.planner import later_changes, read_history
from ledger.views import ActionView


def correction_path(
    view: ActionView, history: Sequence[Entity.Action], contract: Contract | None
) -> CorrectionPath:
    """Whether the action was compensated or replayed (by which actions), and the edits by
    others since that a rollback of it would meet, judged as the rollback planner judges."""
    corrections: list[Correction] = []
    status: Standing = "standing"
    for event in history[view.version :]:
        kind: Literal["compensated", "replayed"] | None = None
        if view.fingerprint in event.compensates:
            kind = "compensated"
        elif view.fingerprint in event.replays:
            kind = "replayed"
        if kind is not None:
            status = kind
            corrections.append(
                Correction(
                    kind,
                    event.fingerprint,
                    event.address,
                    event.originator_version,
                    event.batch,
                    event.actor,
                    event.timestamp,
                )
            )
    later: list[LaterEdit] = []
    in_the_way: set[str] = set()
    if view.operation != TRACK:
        scoped = [ScopedAction(view.version, view.position or 0, view.fingerprint)]
        record = read_history(history, scoped, {view.fingerprint}, "undo")
        for event in record.later:
            fields, _ = later_changes(replace(record, later=[event]), history, True)
            if fields:
                later.append(
                    LaterEdit(
                        event.originator_version,
                        event.operation,
                        event.batch,
                        event.actor,
                        event.timestamp,
                        tuple(sorted(fields)),
                    )
                )
        in_the_way, _ = later_changes(record, history, False)
    return CorrectionPath(
        compensation=view.compensation,
        status=status,
        corrections=tuple(corrections),
        current_version=len(history),
        later_edits=tuple(later),
        fields_in_the_way=tuple(sorted(in_the_way)),
        follow_up=follow_up(view, history, contract),
    )
