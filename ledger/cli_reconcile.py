"""`ledger reconcile`: drift between the ledger and a system, its correction, and baselines.

Exit codes in the manner of ``terraform plan -detailed-exitcode``, so cron and CI can act on
them (the table of every command, `ledger.cli_exit`): 0 clean, 2 drift (found, planned, or
left after applying), 3 some corrections refused or failed, 1 error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ledger.cli_base import _common, _config_option, _emit, _errors_as_messages, _open, _table, main
from ledger.cli_exit import Exit
from ledger.errors import InvalidChange
from ledger.points import Point
from ledger.reconcile import (
    POLICIES,
    SAMPLES,
    ApplyResult,
    Drift,
    ReconcilePlan,
    Report,
    apply,
    capture_baseline,
    compare,
    compare_baseline,
    parse_field_rules,
    plan,
)
from ledger.values import ABSENT


@main.command("reconcile")
@_common
@_errors_as_messages
@_config_option
@click.argument("target", metavar="SYSTEM/COLLECTION")
@click.option("--at", "at", metavar="POINT", help="Compare the ledger as of a checkpoint or time.")
@click.option("--policy", type=click.Choice(POLICIES), help="Which side wins (for --plan/--apply).")
@click.option(
    "--field-rule",
    "field_rules",
    multiple=True,
    metavar="FIELD=ledger|target",
    help="This field's winner, overriding --policy (repeatable).",
)
@click.option("--delete-unknown", is_flag=True, help="Policy ledger: delete unknown records.")
@click.option("--plan", "mode", flag_value="plan", help="Show the corrections; change nothing.")
@click.option("--apply", "mode", flag_value="apply", help="Apply the corrections, then verify.")
@click.option(
    "--out",
    "out",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --plan: save the plan, to apply exactly it later with --apply --from FILE.",
)
@click.option(
    "--from",
    "from_",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --apply: apply this saved plan instead of planning now.",
)
@click.option("--tracked-only", is_flag=True, help="Ignore records the ledger never saw.")
@click.option("--all-fields", is_flag=True, help="Also compare fields the ledger never touched.")
@click.option("--null-is-absent", is_flag=True, help="A null equals an absent field (SQL).")
@click.option("--samples", type=click.IntRange(0), default=SAMPLES, show_default=True)
@click.option(
    "--capture-baseline",
    "capture_path",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the target's collection to FILE (before a batch).",
)
@click.option(
    "--baseline",
    "baseline_path",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Check the target against FILE and the actions recorded since (after a batch).",
)
@click.option("--batch", help="With --baseline: only this batch's actions explain changes.")
def reconcile(
    db: str | None, as_json: bool, config: str | None, target: str, **options: Any
) -> None:
    """Compare SYSTEM/COLLECTION in the ledger with the system itself; plan or apply the
    corrections under a policy; capture a baseline before a batch and check it after.

    Exit code 0: clean; 2: drift found (or left after --apply); 3: some corrections were
    refused or failed; 1: error."""
    from ledger.config import open_adapter

    system, sep, collection = target.partition("/")
    if not sep or not system or not collection or "/" in collection:
        raise InvalidChange(f"{target!r} is not of the form system/collection")
    rules = parse_field_rules(options["field_rules"])
    _refuse_what_does_not_go_together(options)
    mode, samples = options["mode"], options["samples"]
    point = Point.parse(options["at"]) if options["at"] else None
    scope = {k: options[k] for k in ("tracked_only", "all_fields", "null_is_absent")}
    ledger = _open(db)
    adapter = open_adapter(system, config)
    try:
        if options["capture_path"] is not None:
            taken = capture_baseline(ledger, adapter, collection, options["capture_path"])
            _emit(as_json, taken.to_json(), lambda: _print_baseline(taken.to_json()))
            return
        if options["baseline_path"] is not None or mode is None:
            comparison = (
                compare_baseline(
                    ledger,
                    adapter,
                    options["baseline_path"],
                    batch=options["batch"],
                    null_is_absent=options["null_is_absent"],
                )
                if options["baseline_path"] is not None
                else compare(ledger, adapter, collection, point, **scope)
            )
            found = Report.of(comparison, samples)
            _emit(as_json, found.to_json(), lambda: _print_report(found))
            sys.exit(Exit.DONE if found.clean else Exit.REVIEW)
        if options["from_"] is not None:
            made = ReconcilePlan.loads(options["from_"].read_bytes())
            if (made.system, made.collection) != (system, collection):
                raise InvalidChange(
                    f"that plan is for {made.system}/{made.collection}, not {target}"
                )
        else:
            made = plan(
                ledger,
                adapter,
                collection,
                options["policy"],
                point,
                field_rules=rules,
                delete_unknown=options["delete_unknown"],
                samples=samples,
                **scope,
            )
        if mode == "plan":
            if options["out"] is not None:
                options["out"].write_bytes(made.dumps())
            _emit(as_json, made.to_json(), lambda: _print_plan(made, samples))
            sys.exit(Exit.DONE if made.report.clean else Exit.REVIEW)
        result = apply(ledger, adapter, made)
        payload = {**result.to_json(), "plan": made.to_json()}
        _emit(as_json, payload, lambda: _print_result(result))
        if result.refused:
            sys.exit(Exit.REFUSED)
        sys.exit(Exit.DONE if result.verification.clean else Exit.REVIEW)
    finally:
        adapter.close()


def _refuse_what_does_not_go_together(options: dict[str, Any]) -> None:
    given = {name for name, value in options.items() if value not in (None, False, ())}
    baseline = given & {"capture_path", "baseline_path"}
    if len(baseline) == 2:
        raise InvalidChange("give --capture-baseline (before a batch) or --baseline (after it)")
    if baseline and given & {
        "mode",
        "policy",
        "field_rules",
        "delete_unknown",
        "at",
        "tracked_only",
        "all_fields",
    }:
        raise InvalidChange(
            "baselines take no --plan, --apply, --policy, --field-rule, --at, --tracked-only "
            "or --all-fields"
        )
    if "batch" in given and "baseline_path" not in given:
        raise InvalidChange("--batch goes with --baseline")
    mode = options["mode"]
    if mode is None and given & {"policy", "field_rules", "delete_unknown"}:
        raise InvalidChange("--policy, --field-rule and --delete-unknown go with --plan or --apply")
    if "out" in given and mode != "plan":
        raise InvalidChange("--out goes with --plan")
    if "from_" in given and mode != "apply":
        raise InvalidChange("--from goes with --apply")
    if "from_" in given and given & {"policy", "field_rules", "delete_unknown", "at"}:
        raise InvalidChange("a saved plan keeps its own --policy, --field-rule and --at")
    if mode is not None and not given & {"policy", "from_"}:
        raise InvalidChange(
            f"--{mode} needs an explicit --policy: ledger (correct the target) or target "
            "(adopt the target's values into the ledger)"
            + ("; or --from FILE, a plan saved with --plan --out" if mode == "apply" else ""),
            field="--policy",
        )
    if "delete_unknown" in given and options["policy"] != "ledger":
        raise InvalidChange("--delete-unknown goes with --policy ledger")


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


def _print_summary(found: Report) -> None:
    where = f"{found.system}/{found.collection}" + (f" at {found.at}" if found.at else "")
    sizes = f"{found.ledger_records} in the ledger, {found.target_records} in the target"
    if found.clean:
        click.echo(f"{where}: clean ({sizes})")
        return
    counts = ", ".join(f"{n} {kind}" for kind, n in found.counts.items())
    click.echo(f"{where}: {found.drifted} drifted ({counts}); {sizes}")


def _print_report(found: Report) -> None:
    _print_summary(found)
    if found.clean:
        return
    if found.field_counts:
        click.echo("fields: " + ", ".join(f"{f} {n}" for f, n in found.field_counts.items()))
    if found.samples:
        _table(["key", "kind", "field", "ledger", "target"], _drift_rows(found.samples))
    if found.drifted > len(found.samples):
        click.echo(
            f"(showing {len(found.samples)} of {found.drifted}; --json --samples N for more)"
        )


def _print_plan(made: ReconcilePlan, samples: int) -> None:
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
        _table(["key", "step", "field", "from", "to"], rows[:samples])
    if len(rows) > samples:
        click.echo(f"(showing {samples} of {len(rows)} rows; --json for the whole plan)")
    _print_skipped(made)


def _print_skipped(made: ReconcilePlan) -> None:
    if made.skipped:
        keys = ", ".join(s.key for s in made.skipped[:10])
        more = f" and {len(made.skipped) - 10} more" if len(made.skipped) > 10 else ""
        click.echo(f"{len(made.skipped)} left alone ({keys}{more}): {made.skipped[0].reason}")


def _print_result(result: ApplyResult) -> None:
    counts = ", ".join(f"{n} {status}" for status, n in result.counts.items()) or "nothing to do"
    click.echo(f"plan {result.plan.id} (batch {result.plan.batch}): {counts}")
    if result.refused:
        _table(
            ["entity", "status", "field", "expected", "actual", "error"],
            ([o.entity, o.status, o.field, o.expected, o.actual, o.error] for o in result.refused),
        )
    _print_skipped(result.plan)
    click.echo("verification:")
    _print_report(result.verification)


def _print_baseline(taken: dict[str, Any]) -> None:
    click.echo(
        f"baseline {taken['baseline']}: {taken['records']} records of "
        f"{taken['system']}/{taken['collection']} at ledger position {taken['position']}"
    )
