"""`ledger track`: bring an existing collection under the ledger, whole (see `ledger.tracking`)."""

from __future__ import annotations

import sys

import click

from ledger.cli.base import common, config_option, emit, errors_as_messages, main, open_db
from ledger.cli.exit import Exit
from ledger.config import open_adapter
from ledger.errors import InvalidChange
from ledger.tracking import track


@main.command("track")
@common
@errors_as_messages
@config_option
@click.argument("target", metavar="SYSTEM/COLLECTION")
@click.option("--batch", help="Batch to record the baseline in [default: track-SYSTEM-…-TIME].")
@click.option("--actor", help="Who takes the baseline.")
def track_(
    db: str | None,
    as_json: bool,
    config: str | None,
    target: str,
    batch: str | None,
    actor: str | None,
) -> None:
    """Take a baseline of a whole collection: record every record the ledger does not yet
    know whole, exactly as the system holds it (nothing is written to the system). Afterwards
    any view of the collection as of any later point is the whole table. Records whose values
    contradict the ledger are drift, left alone and counted (see `ledger reconcile`).
    Exit code 0: done; 2: done, with drift left for review; 1: error."""
    system, _, collection = target.partition("/")
    if not system or not collection or "/" in collection:
        raise InvalidChange(f"{target!r} is not of the form SYSTEM/COLLECTION", field="target")
    adapter = open_adapter(system, config)
    ledger = open_db(db)
    try:
        with click.progressbar(length=0, label=f"tracking {target}", file=sys.stderr) as bar:
            report = track(
                ledger, adapter, collection, batch=batch, actor=actor, on_progress=bar.update
            )
    finally:
        adapter.close()

    def human() -> None:
        click.echo(
            f"{target}: {report.tracked} tracked, {report.already_whole} already known whole, "
            f"{report.drifted} drifted (left alone) — batch {report.batch}"
        )
        for entity in report.drift_samples:
            click.echo(f"  drift: {entity}")

    emit(as_json, report.to_json(), human)
    if report.drifted:
        sys.exit(Exit.REVIEW)
