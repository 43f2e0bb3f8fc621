"""Operations: `ledger notify` delivers the notices not yet delivered, `ledger metrics` prints the
ledger's Prometheus metrics. Both call one library function (`deliver_notices`,
`metrics_text`); the HTTP API serves the same."""

from __future__ import annotations

import sys
import time

import click
from prometheus_client.parser import text_string_to_metric_families

from ledger.cli.base import config_option, emit, open_db, verb
from ledger.cli.exit import Exit
from ledger.lane_config import configured_lanes, load_lanes
from ledger.metrics import metrics_text
from ledger.notify import DeliveryReport, deliver_notices, load_notifiers


@verb("notify")
@config_option
@click.option("--follow", is_flag=True, help="Keep delivering as new events arrive (Ctrl-C stops).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="With --follow: seconds between looks at the log.",
)
def notify(
    db: str | None, as_json: bool, config: str | None, follow: bool, interval: float
) -> None:
    """Deliver every notice not yet delivered (pauses, trips, enables, canaries, approvals,
    rollbacks planned and applied, drift) to the notifiers of its workflow's lane, each from
    where it stopped. Exit code 0: all delivered; 3: a notifier failed (recorded, retried first
    next time)."""
    ledger = open_db(db, notices=False)
    notifiers, lanes = load_notifiers(config), load_lanes(config)
    report = deliver_notices(ledger, notifiers, lanes)
    _show(report, as_json)
    while follow:
        try:
            seen = report.position
            while (ledger.recorder.max_notification_id() or 0) <= seen:
                time.sleep(interval)  # SQLite has no push; PostgreSQL polls the same way
            report = deliver_notices(ledger, notifiers, lanes)
            _show(report, as_json)
        except KeyboardInterrupt:
            return
    if not report.clean:
        sys.exit(Exit.REFUSED)


def _show(report: DeliveryReport, as_json: bool) -> None:
    def human() -> None:
        for sent in report.delivered:
            click.echo(f"{sent.notifier}: {sent.notice.kind} — {sent.notice.summary}")
        for failure in report.failures:
            click.echo(failure.message, err=True)
        for name in report.busy:
            click.echo(f"{name}: another process is delivering to it now; left to it")
        if not (report.delivered or report.failures or report.busy):
            click.echo(f"nothing to deliver (log position {report.position})")

    emit(as_json, report.to_json(), human)


@verb("metrics")
@config_option
def metrics(db: str | None, as_json: bool, config: str | None) -> None:
    """Print the ledger's Prometheus metrics (text exposition format), computed from the ledger
    itself: actions, refusals, runs, trips, pauses, lane states, rollbacks and their health,
    reconciliations and drift, notifier deliveries."""
    lanes = configured_lanes(config)
    text = metrics_text(open_db(db, notices=False), lanes)
    emit(
        as_json,
        [
            {
                "name": family.name,
                "type": family.type,
                "help": family.documentation,
                "samples": [
                    {"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples
                ],
            }
            for family in text_string_to_metric_families(text.decode())
        ],
        lambda: click.echo(text.decode(), nl=False),
    )
