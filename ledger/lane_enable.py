"""Enabling a paused lane with the evidence the ledger holds, gathered in one place.

`ledger enable` and the HTTP API call `enable_workflow`: it reads what the lane's re-enable
rule asks for (the last reconciliation of each named collection, `ledger.lane_evidence`; the
lane's last canary run, its `RunRecord`), adds the approver named, and lets `enable_lane`
judge it, so no caller assembles evidence of its own.
"""

from __future__ import annotations

from ledger.application import Ledger
from ledger.lane_control import EnableResult, canary_run, enable_lane
from ledger.lane_evidence import last_reconciliation
from ledger.lanes import LaneConfig
from ledger.reenable import ReenableEvidence, ReenableRule


def enable_workflow(
    ledger: Ledger,
    workflow: str,
    actor: str,
    reason: str,
    *,
    config: LaneConfig | None = None,
    approver: str | None = None,
    override: bool = False,
) -> EnableResult:
    """Enable a paused workflow once its lane row's (``config``) re-enable rule is proved by
    what the ledger holds and the ``approver`` named, else `ReenableRefused` naming each unmet
    condition; ``override`` enables without the proof, recorded as such. A workflow without a
    row has an empty rule."""
    rule = config.reenable if config is not None else ReenableRule()
    found = {collection: last_reconciliation(ledger, collection) for collection in rule.reconciled}
    evidence = ReenableEvidence(
        reconciliations={name: result for name, result in found.items() if result is not None},
        canary=canary_run(ledger, workflow),
        approver=approver,
    )
    return enable_lane(
        ledger, workflow, actor, reason, rule=rule, evidence=evidence, override=override
    )
