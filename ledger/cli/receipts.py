"""`ledger receipt ACTION` and `ledger runbook WORKFLOW`: one action explained, one workflow's
runbook; nothing is written to the ledger or a system."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ledger.cli.base import config_option, emit, open_db, verb
from ledger.config import load_contracts, open_adapters
from ledger.integrity import receipt_json
from ledger.lane_config import load_lanes
from ledger.lanes import LaneConfig
from ledger.receipts import ActionReceipt, receipt
from ledger.rollback import Contract
from ledger.rollback.runbook import show
from ledger.runbooks import runbook
from ledger.settings import config_path, read_config


@verb("receipt")
@config_option
@click.argument("action")
@click.option(
    "--proof-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the inclusion proof to this file, to check offline with the public key.",
)
def receipt_(
    db: str | None, as_json: bool, config: str | None, action: str, proof_out: Path | None
) -> None:
    """Everything needed to explain and repair one action: what, why, the change, the checks,
    the correction path, and its tamper-evidence proof. ACTION is a fingerprint (or a unique
    prefix of it) or SYSTEM/COLLECTION/KEY@VERSION."""
    lanes, contracts = _lanes(config), _contracts(config)
    found = receipt(open_db(db), action, lanes=lanes, contracts=contracts)
    if proof_out is not None:
        proof_out.write_text(receipt_json(found.proof))
    emit(as_json, found.to_json(), lambda: click.echo(text(found)))


@verb("runbook")
@config_option
@click.argument("workflow")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the runbook to this file instead of printing it.",
)
def runbook_(
    db: str | None, as_json: bool, config: str | None, workflow: str, out: Path | None
) -> None:
    """The workflow's runbook (markdown) from its lane row and live data: state, owner,
    systems with counts, stop triggers, what rolling back its last batch would do, how to
    verify, who to notify, the re-enable rule, the repair."""
    ledger = open_db(db)
    lane_row = _lanes(config).get(workflow)
    adapters = open_adapters(config) if _has_systems(config) else {}
    try:
        document = runbook(ledger, workflow, lane_row, adapters, contracts=_contracts(config))
    finally:
        for adapter in adapters.values():
            adapter.close()
    if out is not None:
        out.write_text(document)
    payload = {"workflow": workflow, "lane": lane_row is not None, "markdown": document}
    if out is not None:
        payload["out"] = str(out)
    emit(as_json, payload, lambda: click.echo(f"wrote {out}" if out else document))


def _configured(config: str | None) -> bool:
    """Whether there is a configuration file to read: one named (by --config or
    $LEDGER_CONFIG) must exist; the default ./ledger.toml may be absent."""
    return config is not None or config_path(None).is_file()


def _lanes(config: str | None) -> dict[str, LaneConfig]:
    return load_lanes(config) if _configured(config) else {}


def _has_systems(config: str | None) -> bool:
    if not _configured(config):
        return False
    return bool(read_config(config_path(config)).get("systems"))


def _contracts(config: str | None) -> dict[tuple[str, str], Contract]:
    return load_contracts(config) if _has_systems(config) else {}


def text(found: ActionReceipt) -> str:
    """The receipt for people, in sections: what, why, change, checks, correction path."""
    action = found.action
    lines = [
        f"receipt of {action.entity}@{action.version} ({action.fingerprint})",
        "",
        "What",
        f"  {action.operation} of {action.entity} (system {found.destination.system}, "
        f"collection {found.destination.collection}, key {found.destination.key})",
        f"  workflow {action.workflow or '-'} version {action.workflow_version or '-'}, "
        f"batch {action.batch}, actor {action.actor or '-'}",
        f"  recorded {action.recorded_at.isoformat()} at log position {action.position}; "
        f"effective {action.effective_at.isoformat() if action.effective_at else '-'}",
    ]
    if action.requested:
        lines.append(f"  asked for {action.requested}; the system chose this key")
    if action.moved_to:
        lines.append(f"  moved to {action.moved_to}")
    lines += ["", "Why", f"  trigger: {action.trigger or '-'}"]
    for source in found.sources:
        known = (
            f" (version {source.version}, recorded {source.recorded_at.isoformat()})"
            if source.recorded_at
            else " (not a record the ledger holds: no timestamp)"
        )
        lines.append(f"  source: {source.record}{known}")
    lines.append(f"  inputs: {show(action.inputs) if action.inputs else '-'}")
    lines += ["", "Change"]
    for name, (before, after) in found.highlight.items():
        lines.append(f"  * {name}: {show(before)} → {show(after)}")
    proposed = found.proposed
    if proposed is not None:
        values = ", ".join(f"{k}={show(v)}" for k, v in proposed.values.items()) or "-"
        unset = f"; unset {', '.join(proposed.unset)}" if proposed.unset else ""
        expected = ", ".join(f"{k}={show(v)}" for k, v in proposed.expected.items()) or "-"
        lines += [
            f"  proposed ({proposed.declared_at.isoformat()}, {proposed.attempts} attempt(s), "
            f"{proposed.outcome or 'pending'}): {proposed.operation} {values}{unset}",
            f"  expected the target to hold: {expected}",
        ]
    lines.append("  final:")
    lines += [
        f"    {name}: {show(before)} → {show(after)}"
        for name, (before, after) in action.delta.items()
    ] or ["    (no field changed)"]
    lines += ["", "Checks"]
    lines += [f"  {c.status:<7} {c.name}: {c.detail}" for c in found.checks] or ["  -"]
    if found.review is not None:
        review = found.review
        lines.append(f"  review: {review.decision} by {review.by} at {review.at.isoformat()}")
        lines.append(f"          {review.subject}")
    lines += ["", "Correction path", *_correction(found)]
    proof, head = found.proof, found.proof.head
    lines += [
        "",
        "Proof",
        f"  leaf {proof.leaf_index} (hash {proof.leaf_hash.hex()}) of the tree of {head.size} "
        f"events, root {head.root.hex()},",
        f"  signed {head.signed_at.isoformat()} by key {head.key_id}; audit path of "
        f"{len(proof.proof)} hashes (--proof-out FILE writes it, checkable offline with the "
        "public key: docs/integrity.md)",
    ]
    return "\n".join(lines)


def _correction(found: ActionReceipt) -> list[str]:
    path = found.correction
    action = found.action
    compensation: dict[str, Any] = path.compensation
    lines = [f"  compensation: {show(compensation)}"]
    for link, names in (("compensates", action.compensates), ("replays", action.replays)):
        lines += [f"  this action {link} {name}" for name in names]
    lines += [
        f"  {c.kind} by {c.fingerprint} ({c.entity}@{c.version}, batch {c.batch}, "
        f"{c.recorded_at.isoformat()}, actor {c.actor or '-'})"
        for c in path.corrections
    ]
    lines.append(
        f"  status: {path.status}; the record is at version {path.current_version}, this "
        f"action is version {action.version}"
    )
    for edit in path.later_edits:
        lines.append(
            f"  in the way: version {edit.version} ({edit.operation}, batch {edit.batch}, "
            f"by {edit.actor or '-'}, {edit.recorded_at.isoformat()}) on {', '.join(edit.fields)}"
        )
    if path.blocked:
        restorable = (
            f"; under --policy fields, all but {', '.join(path.fields_in_the_way)} can be restored"
            if path.fields_in_the_way
            else "; under --policy fields its own fields can still be restored"
        )
        lines.append(f"  a rollback under skip would leave it for review{restorable}")
    if path.follow_up:
        lines.append(f"  contract: {path.follow_up}")
    return lines
