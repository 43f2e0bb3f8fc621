"""How `ledger reconcile` shows drift, plans and their results to people (tables, one-line
summaries); machines get the outcomes' `to_json()` instead."""

from __future__ import annotations

from typing import Any

import click

from ledger.cli.base import table
from ledger.reconcile import Drift, DriftReport, ReconcilePlan, ReconcileResult
from ledger.values import ABSENT


def _shown(value: Any, other: Any) -> Any:
    """A value for a table; with its type when the other side differs only in type."""
    if value is ABSENT or other is ABSENT or type(value) is type(other):
        return value
    return f"{value!r} ({type(value).__name__})" if value is not None else value


def _drift_rows(drifts: tuple[Drift, ...]) -> list[list[Any]]:
    rows = []
    for drift in drifts:
        for name, (ours, theirs) in drift.fields.items() or {"": (ABSENT, ABSENT)}.items():
            rows.append([drift.key, drift.kind, name, _shown(ours, theirs), _shown(theirs, ours)])
    return rows


def _print_summary(found: DriftReport) -> None:
    where = f"{found.system}/{found.collection}" + (f" at {found.at}" if found.at else "")
    sizes = f"{found.ledger_records} in the ledger, {found.target_records} in the target"
    if found.clean:
        click.echo(f"{where}: clean ({sizes})")
        return
    counts = ", ".join(f"{n} {kind}" for kind, n in found.counts.items())
    click.echo(f"{where}: {found.drifted} drifted ({counts}); {sizes}")


def print_report(found: DriftReport) -> None:
    _print_summary(found)
    if found.clean:
        return
    if found.field_counts:
        click.echo("fields: " + ", ".join(f"{f} {n}" for f, n in found.field_counts.items()))
    if found.samples:
        table(["key", "kind", "field", "ledger", "target"], _drift_rows(found.samples))
    if found.drifted > len(found.samples):
        click.echo(
            f"(showing {len(found.samples)} of {found.drifted}; --json --samples N for more)"
        )


def print_plan(made: ReconcilePlan, samples: int) -> None:
    _print_summary(made.report)
    if made.report.clean:
        return
    click.echo(
        f"plan {made.id} (policy {made.policy}): {len(made.corrections)} correction(s) to the "
        f"target, {len(made.adoptions)} adoption(s) into the ledger"
    )
    rows: list[list[Any]] = []
    for c in made.corrections:
        names = sorted({*c.values, *c.unset, *c.expected}) or [""]
        for name in names:
            rows.append(
                [
                    c.key,
                    f"{c.operation} target",
                    name,
                    c.expected.get(name, ABSENT),
                    c.values.get(name, ABSENT),
                ]
            )
    for a in made.adoptions:
        for name in sorted({*a.values, *a.unset, *a.before}) or [""]:
            rows.append(
                [
                    a.key,
                    f"adopt {a.operation}",
                    name,
                    a.before.get(name, ABSENT),
                    a.values.get(name, ABSENT),
                ]
            )
    if rows:
        table(["key", "step", "field", "from", "to"], rows[:samples])
    if len(rows) > samples:
        click.echo(f"(showing {samples} of {len(rows)} rows; --json for the whole plan)")
    _print_skipped(made)


def _print_skipped(made: ReconcilePlan) -> None:
    if made.skipped:
        keys = ", ".join(s.key for s in made.skipped[:10])
        more = f" and {len(made.skipped) - 10} more" if len(made.skipped) > 10 else ""
        click.echo(f"{len(made.skipped)} left alone ({keys}{more}): {made.skipped[0].reason}")


def print_result(result: ReconcileResult) -> None:
    counts = ", ".join(f"{n} {status}" for status, n in result.counts.items()) or "nothing to do"
    click.echo(f"plan {result.plan.id} (batch {result.plan.batch}): {counts}")
    if result.refused:
        table(
            ["entity", "status", "field", "expected", "actual", "error"],
            ([o.entity, o.status, o.field, o.expected, o.actual, o.error] for o in result.refused),
        )
    _print_skipped(result.plan)
    click.echo("verification:")
    print_report(result.verification)
    for tripped in () if result.recorded is None else result.recorded.trips:
        done = "paused" if tripped.paused_now else "was already paused"
        click.echo(f"lane {tripped.workflow} {done}: {tripped.trip.describe()}")
