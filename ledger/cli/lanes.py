"""`ledger pause | enable | canary | lanes | lane`: a workflow's lane, pausing easy, enabling
hard. Each verb calls one library function (`ledger.lane_control`, `ledger.lane_enable`); the
lane rows come from ``ledger.toml`` (``[lanes.WORKFLOW]``) when there is one."""

from __future__ import annotations

from typing import Any

import click

from ledger.cli.base import actor_option, config_option, emit, open_db, table, verb
from ledger.lane_config import configured_lanes
from ledger.lane_control import allow_canary, lane, lanes, pause_lane
from ledger.lane_enable import enable_workflow
from ledger.lanes import LaneView


@verb("pause")
@click.argument("workflow")
@click.option("--reason", required=True, help="Why: recorded with the pause, shown at the gate.")
@actor_option
def pause(db: str | None, as_json: bool, workflow: str, reason: str, actor: str) -> None:
    """Pause a workflow at once: from the next chunk on, every write of it, from any process,
    is refused before anything is written. Pausing a paused workflow changes nothing."""
    result = pause_lane(open_db(db), workflow, reason, actor)
    emit(
        as_json,
        {"paused_now": result.paused_now, "lane": result.lane.to_json()},
        lambda: click.echo(result.message),
    )


@verb("enable")
@config_option
@click.argument("workflow")
@click.option("--reason", required=True, help="Why it may act again: recorded with the enable.")
@click.option("--approver", help="Who signed off (someone other than the pauser and you).")
@click.option("--override", is_flag=True, help="Enable without the proof; recorded as such.")
@actor_option
def enable(
    db: str | None,
    as_json: bool,
    config: str | None,
    workflow: str,
    reason: str,
    approver: str | None,
    override: bool,
    actor: str,
) -> None:
    """Let a paused workflow act again once its lane's re-enable rule is proved (the last
    reconciliation of its collections clean, a canary run with no trip, an approver); a
    refusal names each unmet condition (exit code 1). --override enables without the proof
    and is recorded as an override, with its reason."""
    result = enable_workflow(
        open_db(db),
        workflow,
        actor,
        reason,
        config=configured_lanes(config).get(workflow),
        approver=approver,
        override=override,
    )
    check = result.check

    def human() -> None:
        how = "overridden" if override and check.unmet else "enabled"
        click.echo(f"workflow {workflow!r} {how} by {actor}: {reason}")
        for condition in check.met:
            click.echo(f"  proved: {condition}")
        for condition in check.unmet:
            click.echo(f"  overridden: {condition}")

    emit(
        as_json,
        {"lane": result.lane.to_json(), "met": list(check.met), "unmet": list(check.unmet)},
        human,
    )


@verb("canary")
@click.argument("workflow")
@click.option("--batch", required=True, help="The one batch the paused lane admits.")
@click.option("--limit", type=click.IntRange(min=1), required=True, help="Its most actions.")
@actor_option
def canary(
    db: str | None, as_json: bool, workflow: str, batch: str, limit: int, actor: str
) -> None:
    """Admit one batch of at most N actions through a paused workflow's gate: the canary run
    its re-enable rule may ask for (`ledger apply --batch NAME`). A trip or a pause ends it."""
    view = allow_canary(open_db(db), workflow, actor, batch, limit)
    emit(
        as_json,
        view.to_json(),
        lambda: click.echo(
            f"workflow {workflow!r} admits canary batch {batch} of at most {limit} action(s)"
        ),
    )


@verb("lanes")
@config_option
def lanes_(db: str | None, as_json: bool, config: str | None) -> None:
    """Every lane (configured, or ever paused): its state, who paused it and why, its last
    trip and its last run."""
    views = lanes(open_db(db), configured_lanes(config))
    emit(
        as_json,
        [view.to_json() for view in views],
        lambda: table(
            ["workflow", "state", "paused by", "why", "last trip", "last run"],
            (_row(view) for view in views),
        ),
    )


@verb("lane")
@config_option
@click.argument("workflow")
def lane_(db: str | None, as_json: bool, config: str | None, workflow: str) -> None:
    """One lane in full: its state, pause, last trip (with its evidence), last enable, canary,
    approvals, last run and its row in ledger.toml."""
    view = lane(open_db(db), workflow, configured_lanes(config).get(workflow))
    emit(as_json, view.to_json(), lambda: _print_lane(view))


def _row(view: LaneView) -> list[Any]:
    pause, trip, run = view.pause, view.last_trip, view.last_run
    return [
        view.workflow,
        view.state,
        None if pause is None else f"{pause.actor} at {pause.at.isoformat(timespec='seconds')}",
        None if pause is None else pause.reason,
        None if trip is None else f"{trip.trigger} at {trip.at.isoformat(timespec='seconds')}",
        None if run is None else f"{run.name} ({run.actions} actions, {run.status})",
    ]


def _print_lane(view: LaneView) -> None:
    data = view.to_json()
    click.echo(f"workflow {view.workflow}: {view.state}")
    for name in ("owner", "pause", "last_trip", "last_enable", "canary", "last_run"):
        value = data.get(name)
        if isinstance(value, dict) and value:
            click.echo(f"{name.replace('_', ' ')}:")
            for key, item in value.items():
                click.echo(f"  {key}: {item}")
        elif value:
            click.echo(f"{name.replace('_', ' ')}: {value}")
    if view.config is not None:
        config = view.config
        click.echo(f"systems: {', '.join(config.systems) or '-'}")
        click.echo(f"re-enable rule: {', '.join(config.reenable.conditions) or 'none'}")
    for approval in view.approvals:
        click.echo(f"approved: plan {approval.plan} by {approval.approver}")
