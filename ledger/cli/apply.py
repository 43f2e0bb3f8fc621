"""`ledger apply | recover`: writing a file of changes to a system through its adapter, and
settling the writes a crash left unconfirmed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ledger.change_files import BatchOptions, ChangeFile
from ledger.cli.base import config_option, emit, open_db, table, verb
from ledger.cli.exit import Exit
from ledger.config import open_adapter, open_adapters
from ledger.errors import LedgerError
from ledger.file_runs import FileRun, FileRunSummary, checked_for
from ledger.lane_config import load_lanes
from ledger.rollback import RollbackPlan
from ledger.rollback_requests import plan_on_trip
from ledger.runs import recover
from ledger.triggers import Trip


@verb("apply")
@config_option
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--system", required=True, help="The configured system to write to.")
@click.option("--batch", required=True, help="Batch (run) id; re-running it applies nothing twice.")
@click.option("--workflow")
@click.option("--workflow-version")
@click.option("--actor")
@click.option("--trigger")
@click.option("--limit", type=int, help="Canary: apply only the batch's first N actions.")
@click.option("--stop-on-stale", is_flag=True, help="Stop at the first refused write.")
@click.option("--keep-open", is_flag=True, help="Leave the batch open for more actions.")
def apply(
    db: str | None,
    as_json: bool,
    config: str | None,
    path: Path,
    system: str,
    limit: int | None,
    stop_on_stale: bool,
    keep_open: bool,
    batch: str,
    workflow: str | None,
    workflow_version: str | None,
    actor: str | None,
    trigger: str | None,
) -> None:
    """Apply a JSON Lines file of changes to a system through its adapter, and record them.

    Every write is compare-and-set: a record someone changed since it was read (or whose
    `expected` values no longer hold) is refused as stale, never overwritten. Exit code 3
    when any change was refused, failed or left pending; 2 when a canary stopped with changes
    left, or outside values were found right after writes (conflicts, on systems without
    conditional writes). The workflow's lane (`[lanes.WORKFLOW]`) is asked before each chunk
    and its stop triggers judge the run as it goes: a paused lane refuses the run before
    anything is written, and a pause (by anyone) or a trip mid-run stops it there with what
    landed recorded; exit code 3 either way (the rest of the writes were refused). A trip at
    the run's end (too few actions) pauses the lane for the next run: exit code 2."""
    options = BatchOptions(batch, workflow, workflow_version, actor, trigger)
    changes = checked_for(ChangeFile.read(path), system, options)
    lanes = load_lanes(config)
    adapter = open_adapter(system, config)
    started = time.monotonic()
    try:
        job = FileRun(
            open_db(db),
            adapter,
            changes,
            options,
            limit=limit,
            stop_on_stale=stop_on_stale,
            keep_open=keep_open,
            started=started,
            lanes=lanes,
        )
        for warning in job.check():  # before anything is written
            click.echo(f"warning: {warning}", err=True)
        with click.progressbar(
            length=len(changes), label=f"applying {path.name}", file=sys.stderr
        ) as bar:
            summary = job.apply(on_progress=bar.update)
    finally:
        adapter.close()
    trip = summary.lane["trip"]
    planned, not_planned = None, None
    if trip is not None and summary.lane["workflow"]:
        try:  # the trip and the pause are committed: a plan that fails must not hide them
            planned = plan_on_trip(
                job.ledger,
                summary.lane["workflow"],
                batch,
                Trip(trip["trigger"], trip["rule"], {}),
                config,
            )
        except LedgerError as error:
            not_planned = (
                f"the rollback of batch {batch} was not planned: {error}; plan it "
                f"with `ledger rollback plan --batch {batch} --out FILE`"
            )
    payload = summary.to_json()
    if planned is not None:
        payload["rollback_plan"] = {"plan": planned[0].id, "path": str(planned[1])}
    if not_planned is not None:
        payload["rollback_plan"] = {"error": not_planned}
    emit(as_json, payload, lambda: _print_summary(summary, planned))
    if not_planned is not None:
        click.echo(f"warning: {not_planned}", err=True)
    if summary.refused or (summary.stopped in ("paused", "tripped") and summary.left):
        sys.exit(Exit.REFUSED)
    if summary.left or summary.conflicts or summary.lane["trip"]:
        sys.exit(Exit.REVIEW)


def _print_summary(summary: FileRunSummary, planned: tuple[RollbackPlan, Path] | None) -> None:
    batch = summary.batch
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.counts.items()))
    click.echo(
        f"batch {batch}: {counts or 'nothing applied'} in {summary.elapsed_seconds:.1f} s "
        f"({summary.retries} retries, {summary.waited_seconds:.1f} s waiting)"
    )
    for warning in summary.warnings:
        click.echo(f"warning: {warning}")
    if summary.refused:
        table(
            ["entity", "status", "field", "expected", "actual", "error"],
            ([o.entity, o.status, o.field, o.expected, o.actual, o.error] for o in summary.refused),
        )
    if summary.counts.get("pending"):
        click.echo("pending writes may have landed: run `ledger recover` once it answers")
    if summary.conflicts:
        click.echo("conflicts: outside values found right after these writes (review them)")
        table(
            ["entity", "field", "written", "found"],
            ([o.entity, o.field, o.expected, o.actual] for o in summary.conflicts),
        )
    if summary.stopped == "canary limit":
        click.echo(
            f"stopped at the canary limit of {summary.limit} action(s): {summary.left} change(s) "
            "left; run the file again with a higher --limit, or none, to apply them"
        )
    elif summary.stopped == "stale":
        click.echo(f"stopped at the first refused write (--stop-on-stale): {summary.left} left")
    elif summary.pause is not None:
        click.echo(f"stopped: {summary.pause}; {summary.left} change(s) not applied")
    elif summary.lane["trip"]:
        trip = summary.lane["trip"]
        click.echo(
            f"workflow {summary.lane['workflow']!r} paused by stop trigger {trip['trigger']}: "
            f"{trip['rule']}; see `ledger lane {summary.lane['workflow']}`"
        )
    if planned is not None:
        plan, path = planned
        click.echo(
            f"the rollback of batch {batch} is planned for review ({len(plan.compensations)} "
            f"compensation(s), {len(plan.conflicts)} conflict(s)): {path}; approve it with "
            f"`ledger rollback approve {plan.id}`, apply it with "
            f"`ledger rollback apply --plan {path}`"
        )
    if summary.stays_open:
        click.echo(
            f"batch {batch} stays open: run the fixed lines into it again "
            f"(`ledger close {batch}` gives up on the rest)"
        )


@verb("recover")
@config_option
@click.option("--batch", help="Only this batch's unsettled writes.")
def recover_(db: str | None, as_json: bool, config: str | None, batch: str | None) -> None:
    """Settle writes a crash left unconfirmed, by reading what each target holds now."""
    adapters = open_adapters(config)
    try:
        outcomes = recover(open_db(db), adapters, batch=batch)
    finally:
        for adapter in adapters.values():
            adapter.close()
    emit(
        as_json,
        [o.to_json() for o in outcomes],
        lambda: click.echo(
            f"{len(outcomes)} unsettled write(s): "
            + (", ".join(f"{o.entity} {o.status}" for o in outcomes[:20]) or "nothing to do")
        ),
    )
