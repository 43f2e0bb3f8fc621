"""A workflow's runbook: its lane row and the ledger's live data, as markdown a person acts on.

What stops it, who owns the stop, which systems it touches (with counts), what rolling back
its last batch would do (a dry run through `plan_rollback`), how to verify, who is told, what
re-enables it and what repairs it. A rollback plan's own runbook is
`ledger.rollback.runbook`; this one is the workflow's, and links to that one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ledger.application import Ledger
from ledger.lane_control import canary_run
from ledger.lane_control import lane as lane_view
from ledger.lane_evidence import last_reconciliation
from ledger.lanes import LaneConfig, LaneView, PauseRecord, check_workflow
from ledger.ports import Adapter
from ledger.reenable import ReenableRule
from ledger.rollback import Contract, RollbackPlan, RollbackScope, plan_rollback
from ledger.rollback.runbook import show
from ledger.store import MatchedAction
from ledger.triggers import Triggers
from ledger.views import BatchView

__all__ = ["Footprint", "footprints", "runbook", "trigger_rules"]


@dataclass(frozen=True)
class Footprint:
    """What a workflow touched in one collection: distinct records, and actions."""

    system: str
    collection: str
    records: int
    actions: int


def runbook(
    ledger: Ledger,
    workflow: str,
    lane: LaneConfig | None,
    adapters: Mapping[str, Adapter] | None = None,
    *,
    contracts: Mapping[tuple[str, str], Contract] | None = None,
) -> str:
    """The workflow's runbook (markdown). Without ``lane`` (its row in ledger.toml) it says no
    lane is configured and still shows what the ledger knows; without ``adapters`` the
    rollback dry run says which systems it needs."""
    check_workflow(workflow)
    view = lane_view(ledger, workflow, lane)
    footprint = footprints(ledger.index.actions_matching(workflow=workflow))
    batches = [b for b in ledger.batches() if b.workflow == workflow]
    last = batches[-1] if batches else None
    position = ledger.recorder.max_notification_id() or 0
    lines = [
        f"# Runbook: {workflow}",
        "",
        f"Written {datetime.now(UTC).isoformat(timespec='seconds')} from "
        + ("its lane row in ledger.toml" if lane else "the ledger alone")
        + f" and the ledger at log position {position}.",
        "",
    ]
    if lane is None:
        lines += [
            f"**No lane is configured** for `{workflow}`: add a `[lanes.{workflow}]` row to "
            "ledger.toml to declare its owner, stop triggers, who is notified and the proof "
            "that re-enables it (docs/lanes.md).",
            "",
        ]
    lines += _state(view)
    lines += ["## Owner", "", _or_none(lane.owner if lane else None), ""]
    lines += _systems(footprint, lane)
    lines += _triggers(lane)
    lines += _last_batch(ledger, last, adapters, contracts, lane)
    lines += _verify(workflow, last, footprint)
    notify = ", ".join(f"`{n}`" for n in lane.notify) if lane and lane.notify else None
    lines += ["## Who to notify", "", _or_none(notify), ""]
    lines += _reenable(ledger, workflow, lane.reenable if lane else None)
    lines += _repair(lane, last)
    return "\n".join(lines)


def footprints(rows: Iterable[MatchedAction]) -> list[Footprint]:
    """Per system and collection, the distinct records and the actions among ``rows``."""
    actions: Counter[tuple[str, str]] = Counter()
    records: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        where = (row.system, row.collection)
        actions[where] += 1
        records.setdefault(where, set()).add(row.key)
    return [
        Footprint(system, collection, len(records[(system, collection)]), count)
        for (system, collection), count in sorted(actions.items())
    ]


def _state(view: LaneView) -> list[str]:
    lines = ["## State now", ""]
    if view.pause is None:
        lines.append("**Active**: its writes go through the gate.")
    else:
        lines.append(f"**Paused** {_pause(view.pause)}. Nothing of it is written until enabled.")
    if view.canary is not None:
        lines.append(
            f"Canary admitted: batch `{view.canary.batch}`, at most {view.canary.limit} actions "
            f"(allowed by {view.canary.actor} at {view.canary.at.isoformat()})."
        )
    if view.last_trip is not None and view.last_trip is not view.pause:
        lines.append(f"Last trip: {_pause(view.last_trip)}.")
    if view.last_enable is not None:
        enable = view.last_enable
        how = "by override" if enable.override else "with proof: " + "; ".join(enable.proved)
        lines.append(
            f"Last enabled by {enable.actor} at {enable.at.isoformat()} {how} ({enable.reason})."
        )
    if view.last_run is not None:
        run = view.last_run
        lines.append(f"Last run: batch `{run.name}`, {run.status}, {run.actions} actions.")
    return [*lines, ""]


def _pause(pause: PauseRecord) -> str:
    by = f"by stop trigger `{pause.trigger}`" if pause.trigger else f"by {pause.actor}"
    run = f" in batch `{pause.batch}`" if pause.batch else ""
    return f"{by} at {pause.at.isoformat()}{run}: {pause.reason}"


def _systems(footprint: list[Footprint], lane_row: LaneConfig | None) -> list[str]:
    lines = ["## Affected systems", ""]
    if footprint:
        lines += ["| system | collection | records | actions |", "|---|---|---:|---:|"]
        lines += [f"| {f.system} | {f.collection} | {f.records} | {f.actions} |" for f in footprint]
        lines.append("")
    else:
        lines += ["The ledger holds no action of this workflow yet.", ""]
    declared = set(lane_row.systems) if lane_row else set()
    touched = {f.system for f in footprint}
    if declared - touched:
        lines += [f"Declared but not touched yet: {', '.join(sorted(declared - touched))}.", ""]
    if lane_row and touched - declared:
        lines += [
            f"Touched but not declared in the lane row: {', '.join(sorted(touched - declared))}.",
            "",
        ]
    return lines


def trigger_rules(triggers: Triggers) -> list[str]:
    """Each declared stop trigger, in words."""
    rules = []
    for name, rate in (("failed", triggers.failure_rate), ("stale", triggers.stale_rate)):
        if rate is not None:
            rules.append(
                f"more than {rate.above:.1%} of a run's writes {name}, once it made "
                f"{rate.min_actions} attempts"
            )
    for operation, volume in triggers.volume.items():
        if volume.more_than is not None:
            rules.append(f"more than {volume.more_than} {operation}s in one run")
        if volume.above_median_percent is not None:
            rules.append(
                f"{operation}s more than +{volume.above_median_percent:g}% above the median of "
                f"its last {volume.runs} runs"
            )
    if triggers.too_few is not None:
        rules.append(f"a run ending with fewer than {triggers.too_few} actions (stalled)")
    for field, guard in triggers.fields.items():
        if guard.order:
            order = " → ".join(show(value) for value in guard.order)
            rules.append(f"`{field}` moving backwards in {order}")
        if guard.at_most_percent is not None:
            rules.append(f"`{field}` changing by more than {guard.at_most_percent:g}%")
    if triggers.rollback_conflicts is not None:
        rules.append(f"a rollback plan with more than {triggers.rollback_conflicts} conflicts")
    if triggers.drift_share is not None:
        rules.append(f"reconciliation finding more than {triggers.drift_share:.1%} drifted")
    if triggers.source_age is not None:
        rules.append(f"a change drafted from source records older than {triggers.source_age}")
    return rules


def _triggers(lane_row: LaneConfig | None) -> list[str]:
    lines = ["## Stop triggers", ""]
    rules = trigger_rules(lane_row.triggers) if lane_row else []
    if not rules:
        return [*lines, "None declared: only a person pauses it (`ledger pause`).", ""]
    lines.append("It pauses itself, mid-run, on:")
    lines += [f"- {rule}" for rule in rules]
    assert lane_row is not None
    then = "A trip pauses the lane, records the trigger and its evidence, and notifies"
    if lane_row.on_trip == "plan-rollback":
        then += "; it also plans the rollback of the batch that tripped, ready for approval"
    lines += ["", f"{then}.", ""]
    if lane_row.approval == "two-person":
        lines += [
            "A rollback plan of its batches is applied only once approved by someone other "
            "than its planner (`ledger rollback approve PLAN`).",
            "",
        ]
    return lines


def _last_batch(
    ledger: Ledger,
    last: BatchView | None,
    adapters: Mapping[str, Adapter] | None,
    contracts: Mapping[tuple[str, str], Contract] | None,
    lane_row: LaneConfig | None,
) -> list[str]:
    lines = ["## The last batch, and rolling it back", ""]
    if last is None:
        return [*lines, "No batch yet.", ""]
    lines += [
        f"Batch `{last.name}` ({last.status}, {last.actions} actions, opened "
        f"{last.opened_at.isoformat()}, workflow version {last.workflow_version or '-'}).",
        "",
    ]
    needed = sorted({row.system for row in ledger.index.actions_matching(batches=[last.name])})
    missing = [name for name in needed if name not in (adapters or {})]
    if missing:
        return [
            *lines,
            f"A dry run of its rollback needs to read the records it touched from "
            f"{', '.join(missing)}: configure {', '.join(f'[systems.{m}]' for m in missing)} in "
            f"ledger.toml, then `ledger rollback plan --batch {last.name}`.",
            "",
        ]
    plan = plan_rollback(
        ledger,
        RollbackScope(batches=(last.name,)),
        dict(adapters or {}),
        contracts=dict(contracts or {}),
    )
    return [*lines, *_plan_summary(plan, lane_row)]


def _plan_summary(plan: RollbackPlan, lane_row: LaneConfig | None) -> list[str]:
    kinds = Counter(c.kind for c in plan.compensations)
    would = ", ".join(f"{count} to {kind}" for kind, count in sorted(kinds.items())) or "nothing"
    lines = [
        f"Rolling it back now (dry run, plan `{plan.id}`, policy `{plan.policy}`) would: "
        f"{would}; {len(plan.conflicts)} conflicts left for review; "
        f"{len(plan.already_rolled_back)} already rolled back; "
        f"{len(plan.followups)} manual follow-ups.",
        "",
    ]
    if plan.aborted:
        lines += ["The plan is **aborted** by its policy: nothing would change.", ""]
    limit = lane_row.triggers.rollback_conflicts if lane_row else None
    if limit is not None and len(plan.conflicts) > limit:
        lines += [f"That is more than the {limit} conflicts its lane accepts: it would trip.", ""]
    if plan.conflicts:
        lines += ["| conflict | why | fields | competing values |", "|---|---|---|---|"]
        for conflict in plan.conflicts:
            competing = "; ".join(
                ", ".join(f"{k}={show(v)}" for k, v in item.items()) for item in conflict.competing
            )
            lines.append(
                f"| {conflict.entity} | {conflict.reason} | {', '.join(conflict.fields)} | "
                f"{competing} |"
            )
        lines.append("")
    for followup in plan.followups:
        owner = f" (owner: {followup.owner})" if followup.owner else ""
        lines.append(f"- **{followup.action}** {followup.entity}: {followup.reason}{owner}")
    for caution in plan.cautions:
        lines.append(f"- caution: {caution.entity}: {caution.reason}")
    if plan.followups or plan.cautions:
        lines.append("")
    lines += [
        f"The full plan, record by record: `ledger rollback plan --batch {plan.scope.batches[0]} "
        "--runbook rollback.md --out plan.bin`; apply it with `ledger rollback apply --plan "
        "plan.bin`.",
        "",
    ]
    return lines


def _verify(workflow: str, last: BatchView | None, footprint: list[Footprint]) -> list[str]:
    lines = ["## How to verify", ""]
    if last is not None:
        lines.append(f"- `ledger rollback check --batch {last.name}`: can its last batch be undone")
    lines += [
        f"- `ledger reconcile check {f.system}/{f.collection}`: does the system still hold what "
        "the ledger says"
        for f in footprint
    ]
    lines += [
        "- `ledger verify`: the history is untampered",
        f"- `ledger lanes`: the state of `{workflow}` and its last run",
        "",
    ]
    return lines


def _reenable(ledger: Ledger, workflow: str, rule: ReenableRule | None) -> list[str]:
    """The rule in words, each condition with the evidence recorded for it so far."""
    lines = ["## Re-enable rule", ""]
    conditions = []
    for collection in rule.reconciled if rule else ():
        last = last_reconciliation(ledger, collection)
        now = (
            "never reconciled yet"
            if last is None
            else f"last reconciled {last.at.isoformat()}: {last.drifted} of {last.checked} drifted"
        )
        conditions.append(
            f"the last reconciliation of {collection}, after the pause, is clean ({now})"
        )
    if rule is not None and rule.canary is not None:
        canary = canary_run(ledger, workflow)
        now = (
            "no canary has run"
            if canary is None
            else f"last canary {canary.batch}: {canary.actions} actions, "
            + ("tripped" if canary.tripped else "completed" if canary.completed else "unfinished")
        )
        conditions.append(
            f"a canary run of at least {rule.canary} actions, after the pause, ran to its end "
            f"with no trip ({now})"
        )
    if rule is not None and rule.approver:
        conditions.append("someone other than the pauser and the enabler signed off")
    if conditions:
        lines.append(f"`ledger enable {workflow}` succeeds only when:")
        lines += [f"- {condition}" for condition in conditions]
    else:
        lines.append(f"No proof is asked: `ledger enable {workflow}` with a reason re-enables it.")
    lines += [
        "",
        "`--override` with a reason enables it anyway, and is recorded as an override.",
        "",
    ]
    return lines


def _repair(lane_row: LaneConfig | None, last: BatchView | None) -> list[str]:
    verb = lane_row.repair if lane_row else None
    batch = last.name if last else "BATCH"
    if verb is None or verb == "rollback":
        text = f"Roll back: `ledger rollback plan --batch {batch}`, then `ledger rollback apply`."
        if verb is None:
            text = "Not declared; the ledger's repair is a rollback. " + text
    else:
        text = (
            f"`{verb}`: a person repairs its actions (the lane row declares them not reversible "
            "by a write); each action's receipt (`ledger receipt ACTION`) says what to repair."
        )
    return ["## Repair", "", text, ""]


def _or_none(text: str | None) -> str:
    if text:
        return text
    return "Not declared."
