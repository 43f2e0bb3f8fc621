"""`ledger reconcile check|plan|apply` and `ledger reconcile baseline capture|check`.

The grammar of `ledger rollback`: `check` finds drift, `plan` shows the corrections under a
policy (and can save them), `apply` carries them out and verifies. The rules of what goes with
what (an explicit policy, a saved plan keeping its own options) are the library's
(`ledger.reconcile.plans`); this module only reads options and prints.

The spelling before the subcommands, `ledger reconcile SYSTEM/COLLECTION [--plan|--apply]
[--capture-baseline FILE|--baseline FILE] …`, still works for one release: it does exactly
what it did, with a one-line note on stderr naming the new spelling. (That is why this module
is over 400 lines; its ~100 lines go with the old spelling in the next release.)

Exit codes in the manner of ``terraform plan -detailed-exitcode``, so cron and CI can act on
them (the table of every command, `ledger.cli.exit`): 0 clean, 2 drift (found, planned, or
left after applying), 3 some corrections refused or failed, 1 error.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ledger.application import Ledger
from ledger.cli.base import (
    F,
    actor_option,
    common,
    config_option,
    emit,
    errors_as_messages,
    main,
    open_db,
)
from ledger.cli.exit import Exit
from ledger.cli.reconcile_output import print_plan, print_report, print_result
from ledger.config import open_adapter
from ledger.errors import InvalidChange
from ledger.lane_config import load_lanes
from ledger.points import Point
from ledger.ports import Adapter
from ledger.reconcile import (
    POLICIES,
    SAMPLES,
    DriftReport,
    ReconcilePlan,
    ReconcileScope,
    apply_reconciliation,
    capture_baseline,
    check_reconciliation,
    compare_baseline,
    load_plan,
    parse_field_rules,
    plan_reconciliation,
)


class _ReconcileCommands(click.Group):
    """The subcommands, and the old spelling for whatever does not start with one."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [_OLD, *args]
        return super().parse_args(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return _old_spelling if cmd_name == _OLD else super().get_command(ctx, cmd_name)


_OLD = "(old spelling)"


@main.group("reconcile", cls=_ReconcileCommands)
def reconcile() -> None:
    """Compare SYSTEM/COLLECTION in the ledger with the system itself: `check` reports drift,
    `plan` shows its corrections under a policy, `apply` makes them and verifies;
    `baseline capture` before a batch and `baseline check` after it. Exit code 0: clean;
    2: drift found (or left after apply); 3: some corrections were refused or failed; 1: error.
    (`ledger reconcile SYSTEM/COLLECTION [--plan|--apply] …` is the old spelling, kept for a
    release.)"""


@reconcile.group("baseline")
def baseline() -> None:
    """Capture the target before a batch; check afterwards that the batch did only what it
    recorded."""


def _verb(command: F) -> F:
    """SYSTEM/COLLECTION, --db, --json and --config, with library errors as messages."""
    command = click.argument("target", metavar="SYSTEM/COLLECTION")(command)
    return common(errors_as_messages(config_option(command)))


def _scope_options(command: F) -> F:
    for option in reversed(
        [
            click.option("--at", metavar="POINT", help="The ledger as of a checkpoint or time."),
            click.option(
                "--tracked-only", is_flag=True, help="Ignore records the ledger never saw."
            ),
            click.option(
                "--all-fields", is_flag=True, help="Also compare fields the ledger never touched."
            ),
            _null_is_absent,
            _samples,
        ]
    ):
        command = option(command)
    return command


def _policy_options(command: F) -> F:
    for option in reversed(
        [
            click.option("--policy", type=click.Choice(POLICIES), help="Which side wins."),
            click.option(
                "--field-rule",
                "field_rules",
                multiple=True,
                metavar="FIELD=ledger|target",
                help="This field's winner, overriding --policy (repeatable).",
            ),
            click.option(
                "--delete-unknown", is_flag=True, help="Policy ledger: delete unknown records."
            ),
        ]
    ):
        command = option(command)
    return command


_null_is_absent = click.option(
    "--null-is-absent", is_flag=True, help="A null equals an absent field (SQL)."
)
_samples = click.option("--samples", type=click.IntRange(0), default=SAMPLES, show_default=True)
_new_file = click.Path(dir_okay=False, path_type=Path)
_file = click.Path(exists=True, dir_okay=False, path_type=Path)


@reconcile.command("check")
@_verb
@_scope_options
@actor_option
def check(db: str | None, as_json: bool, config: str | None, target: str, **scope: Any) -> None:
    """Report the drift between the ledger and the system; change nothing in either. The
    result of a check of now is recorded (lane evidence), and pauses the lanes touching the
    system whose drift_share it exceeds. Exit code 0: clean; 2: drift found; 1: error."""
    _check(db, as_json, config, target, **scope)


@reconcile.command("plan")
@_verb
@_policy_options
@_scope_options
@click.option(
    "--out", metavar="FILE", type=_new_file, help="Save the plan, to apply exactly it later."
)
def plan(db: str | None, as_json: bool, config: str | None, target: str, **options: Any) -> None:
    """Plan the corrections under an explicit --policy (ledger: correct the target; target:
    adopt the target's values into the ledger); change nothing.
    Exit code 0: clean, nothing to do; 2: drift planned; 1: error."""
    _plan(db, as_json, config, target, **options)


@reconcile.command("apply")
@_verb
@_policy_options
@_scope_options
@click.option(
    "--from",
    "from_",
    metavar="FILE",
    type=_file,
    help="Apply this saved plan (`plan --out`) instead of planning now.",
)
@actor_option
def apply(db: str | None, as_json: bool, config: str | None, target: str, **options: Any) -> None:
    """Apply the corrections (planned now under --policy, or a saved plan: --from FILE)
    exactly once, compare-and-set, then compare again (recorded, as lane evidence: a clean
    one after repairs is what a `reconciled` re-enable rule asks for). Exit code 0: clean
    afterwards; 2: drift left for review; 3: some corrections refused or failed; 1: error."""
    _apply(db, as_json, config, target, **options)


@baseline.command("capture")
@_verb
@click.argument("path", metavar="FILE", type=_new_file)
def capture(db: str | None, as_json: bool, config: str | None, target: str, path: Path) -> None:
    """Write the target's collection to FILE, with the ledger's position (before a batch).
    Exit code 0: written; 1: error."""
    _capture(db, as_json, config, target, path)


@baseline.command("check")
@_verb
@click.argument("path", metavar="FILE", type=_file)
@click.option("--batch", help="Only this batch's actions explain changes.")
@_null_is_absent
@_samples
def baseline_check(
    db: str | None, as_json: bool, config: str | None, target: str, path: Path, **options: Any
) -> None:
    """Check the target against a baseline FILE and the actions recorded since (after a
    batch). Exit code 0: everything explained; 2: drift; 1: error."""
    _baseline_check(db, as_json, config, target, path, **options)


# What each command does, shared by the old spelling --------------------------------------


def _collection(target: str) -> tuple[str, str]:
    system, sep, collection = target.partition("/")
    if not sep or not system or not collection or "/" in collection:
        raise InvalidChange(f"{target!r} is not of the form system/collection")
    return system, collection


@contextmanager
def _opened(db: str | None, config: str | None, system: str) -> Iterator[tuple[Ledger, Adapter]]:
    ledger = open_db(db)
    adapter = open_adapter(system, config)
    try:
        yield ledger, adapter
    finally:
        adapter.close()


def _scope(
    at: str | None, tracked_only: bool, all_fields: bool, null_is_absent: bool
) -> ReconcileScope:
    point = Point.parse(at) if at else None
    return ReconcileScope(point, tracked_only, all_fields, null_is_absent)


def _report(as_json: bool, found: DriftReport) -> None:
    emit(as_json, found.to_json(), lambda: print_report(found))
    sys.exit(Exit.DONE if found.clean else Exit.REVIEW)


def _check(
    db: str | None,
    as_json: bool,
    config: str | None,
    target: str,
    samples: int,
    actor: str,
    **scope: Any,
) -> None:
    system, collection = _collection(target)
    chosen = _scope(**scope)
    lanes = load_lanes(config)
    with _opened(db, config, system) as (ledger, adapter):
        found = check_reconciliation(
            ledger, adapter, collection, chosen, actor=actor, lanes=lanes, samples=samples
        )

    def human() -> None:
        print_report(found.report)
        for tripped in () if found.recorded is None else found.recorded.trips:
            done = "paused" if tripped.paused_now else "was already paused"
            click.echo(f"lane {tripped.workflow} {done}: {tripped.trip.describe()}")

    emit(as_json, found.to_json(), human)
    sys.exit(Exit.DONE if found.report.clean else Exit.REVIEW)


def _planned(
    ledger: Ledger, adapter: Adapter, collection: str, samples: int, **options: Any
) -> ReconcilePlan:
    scope = _scope(*(options[k] for k in ("at", "tracked_only", "all_fields", "null_is_absent")))
    return plan_reconciliation(
        ledger,
        adapter,
        collection,
        options["policy"],
        scope.at,
        field_rules=parse_field_rules(options["field_rules"]),
        delete_unknown=options["delete_unknown"],
        tracked_only=scope.tracked_only,
        all_fields=scope.all_fields,
        null_is_absent=scope.null_is_absent,
        samples=samples,
    )


def _plan(
    db: str | None, as_json: bool, config: str | None, target: str, out: Path | None, **options: Any
) -> None:
    system, collection = _collection(target)
    parse_field_rules(options["field_rules"])  # a bad rule is refused before anything is read
    with _opened(db, config, system) as (ledger, adapter):
        made = _planned(ledger, adapter, collection, **options)
    if out is not None:
        out.write_bytes(made.dumps())
    emit(as_json, made.to_json(), lambda: print_plan(made, options["samples"]))
    sys.exit(Exit.DONE if made.report.clean else Exit.REVIEW)


def _apply(
    db: str | None,
    as_json: bool,
    config: str | None,
    target: str,
    from_: Path | None,
    actor: str,
    **options: Any,
) -> None:
    system, collection = _collection(target)
    rules = parse_field_rules(options["field_rules"])
    lanes = load_lanes(config)
    with _opened(db, config, system) as (ledger, adapter):
        if from_ is not None:
            made = load_plan(
                from_.read_bytes(),
                system,
                collection,
                policy=options["policy"],
                field_rules=rules,
                delete_unknown=options["delete_unknown"],
                scope=_scope(
                    *(options[k] for k in ("at", "tracked_only", "all_fields", "null_is_absent"))
                ),
            )
        else:
            made = _planned(ledger, adapter, collection, **options)
        result = apply_reconciliation(ledger, adapter, made, actor=actor, lanes=lanes)
    payload = {**result.to_json(), "plan": made.to_json()}
    emit(as_json, payload, lambda: print_result(result))
    if result.refused:
        sys.exit(Exit.REFUSED)
    sys.exit(Exit.DONE if result.verification.clean else Exit.REVIEW)


def _capture(db: str | None, as_json: bool, config: str | None, target: str, path: Path) -> None:
    system, collection = _collection(target)
    with _opened(db, config, system) as (ledger, adapter):
        taken = capture_baseline(ledger, adapter, collection, path).to_json()
    emit(
        as_json,
        taken,
        lambda: click.echo(
            f"baseline {taken['baseline']}: {taken['records']} records of "
            f"{taken['system']}/{taken['collection']} at ledger position {taken['position']}"
        ),
    )


def _baseline_check(
    db: str | None,
    as_json: bool,
    config: str | None,
    target: str,
    path: Path,
    batch: str | None,
    null_is_absent: bool,
    samples: int,
) -> None:
    system, collection = _collection(target)
    with _opened(db, config, system) as (ledger, adapter):
        comparison = compare_baseline(
            ledger, adapter, path, collection=collection, batch=batch, null_is_absent=null_is_absent
        )
        _report(as_json, DriftReport.of(comparison, samples))


# The old spelling, kept for one release -------------------------------------------------


class _OldSpellingContext(click.Context):
    """The old spelling has no name of its own: its usage reads `ledger reconcile …`."""

    @property
    def command_path(self) -> str:
        return self.parent.command_path if self.parent is not None else ""


class _OldSpelling(click.Command):
    context_class = _OldSpellingContext


@click.command(_OLD, cls=_OldSpelling, hidden=True)
@_verb
@_policy_options
@_scope_options
@click.option("--plan", "mode", flag_value="plan", help="Show the corrections; change nothing.")
@click.option("--apply", "mode", flag_value="apply", help="Apply the corrections, then verify.")
@click.option("--out", metavar="FILE", type=_new_file, help="With --plan: save the plan.")
@click.option("--from", "from_", metavar="FILE", type=_file, help="With --apply: a saved plan.")
@click.option(
    "--capture-baseline",
    "capture_path",
    metavar="FILE",
    type=_new_file,
    help="Write the target's collection to FILE (before a batch).",
)
@click.option(
    "--baseline",
    "baseline_path",
    metavar="FILE",
    type=_file,
    help="Check the target against FILE and the actions recorded since (after a batch).",
)
@click.option("--batch", help="With --baseline: only this batch's actions explain changes.")
@actor_option
def _old_spelling(
    db: str | None, as_json: bool, config: str | None, target: str, **options: Any
) -> None:
    """The old spelling of `ledger reconcile check|plan|apply` and `ledger reconcile baseline
    capture|check`, kept for a release: the same options, with --plan, --apply,
    --capture-baseline FILE or --baseline FILE for the subcommand."""
    _refuse_what_does_not_go_together(options)
    mode, out, from_ = options.pop("mode"), options.pop("out"), options.pop("from_")
    capture_path, baseline_path = options.pop("capture_path"), options.pop("baseline_path")
    batch = options.pop("batch")
    actor = options.pop("actor")
    common = (db, as_json, config, target)
    if capture_path is not None:
        _deprecated(target, "--capture-baseline", f"baseline capture {target} {capture_path}")
        _capture(*common, capture_path)
    elif baseline_path is not None:
        with_batch = f" --batch {batch}" if batch else ""
        _deprecated(target, "--baseline", f"baseline check {target} {baseline_path}{with_batch}")
        _baseline_check(
            *common, baseline_path, batch, options["null_is_absent"], options["samples"]
        )
    elif mode is None:
        _deprecated(target, "", f"check {target}")
        for name in ("policy", "field_rules", "delete_unknown"):
            options.pop(name)
        _check(*common, actor=actor, **options)
    elif mode == "plan":
        _deprecated(target, "--plan", f"plan {target}")
        _plan(*common, out, **options)
    else:
        _deprecated(target, "--apply", f"apply {target}")
        _apply(*common, from_, actor, **options)


def _deprecated(target: str, flag: str, new: str) -> None:
    old = f"ledger reconcile {target}" + (f" {flag}" if flag else "")
    click.echo(
        f"note: `{old}` is the old spelling, removed in the next release: "
        f"use `ledger reconcile {new}` (the other options are the same)",
        err=True,
    )


def _refuse_what_does_not_go_together(options: dict[str, Any]) -> None:
    """The old spelling's grammar: which options go with which of its modes. (What goes with
    what in any spelling — an explicit policy, a saved plan keeping its own — is the
    library's: `Rules.of`, `load_plan`.)"""
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
