"""`ledger rollback …` and `ledger replay …`: plan first, then apply, exactly once.

A replay is a rollback's other direction (redo a batch): the same commands, planner and runs.
Exit codes follow the one table (`ledger.cli.exit`): 0 done, nothing left; 1 error; 2 done,
with items left for review (conflicts, follow-ups, cautions, a blocked or aborted plan); 3 some
writes were refused (changed since the plan) or failed, or verification found a record that does
not hold the planned state."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from ledger.cli.base import (
    F,
    actor_option,
    common,
    config_option,
    emit,
    errors_as_messages,
    main,
    open_db,
    table,
)
from ledger.cli.exit import Exit
from ledger.config import configured_systems
from ledger.lane_config import load_lanes
from ledger.rollback import (
    MISSING_PARENT,
    ON_FAILURE,
    POLICIES,
    RollbackPlan,
    RollbackScope,
    rollback_plans,
)
from ledger.rollback_requests import (
    PLANNING_OPTIONS,
    Direction,
    ScopeCheck,
    apply_configured,
    approve_saved,
    for_review,
    load_saved_plan,
    plan_and_save,
    plan_configured,
    plan_with,
    rollback_scope,
)


@main.group("rollback")
def rollback() -> None:
    """Reverse batches: `plan` shows what would change and the conflicts; `approve` (a
    two-person lane's plans); `apply` does it."""


@main.group("replay")
def replay() -> None:
    """Redo batches (after a mistaken rollback, or onto a rebuilt target): `plan`, `apply`."""


def _scope_options(command: F) -> F:
    for option in reversed(
        [
            click.option(
                "--batch", "batches", multiple=True, help="A batch to reverse (repeatable)."
            ),
            click.option("--workflow", help="Only this workflow's actions (with --since)."),
            click.option(
                "--since", metavar="POINT", help="Actions after a checkpoint, time or position."
            ),
            click.option("--system", help="Only this system."),
            click.option("--collection", help="Only this collection (with --system)."),
            click.option(
                "--policy",
                type=click.Choice(POLICIES),
                default="skip",
                show_default=True,
                help="What to do with records changed since by someone else.",
            ),
            click.option(
                "--missing-parent",
                type=click.Choice(MISSING_PARENT),
                default="skip",
                show_default=True,
                help="What to do with a record whose parent record is gone (where the system "
                "knows relations): skip it and list it, or abort the whole plan.",
            ),
        ]
    ):
        command = option(command)
    return command


def _verb(command: F) -> F:
    """--db, --json and --config, with library errors as messages."""
    return config_option(common(errors_as_messages(command)))


def _scope(options: dict[str, Any]) -> RollbackScope:
    """The scope the options name (``missing_parent`` among them is a planning option)."""
    return rollback_scope(**{k: v for k, v in options.items() if k != "missing_parent"})


_HELP = {
    "undo": {
        "plan": "Plan a rollback: changes no target. --out saves it sealed and records it, "
        "to approve and apply later. A plan with more conflicts than a lane's "
        "rollback_conflicts pauses that lane. Exit code 2 when something is left for "
        "review (conflicts, follow-ups, cautions, a lane paused).",
        "check": "Can this scope be reversed, and what blocks it? Exit code 0: yes; 2: blocked.",
        "apply": "Apply a rollback (a saved plan, or a scope planned now), newest change first. "
        "Every compensation is checked against the ledger's history and is compare-and-set "
        "against what the plan expects: a record changed since planning is skipped and listed. "
        "Running it again changes nothing and says so. Exit code 2 when conflicts were left "
        "for review; 3 when writes were refused or failed, or verification found a mismatch.",
    },
    "redo": {
        "plan": "Plan a replay (redo the scope's changes): changes no target. --out saves it "
        "sealed and records it. Exit code 2 when something is left for review (conflicts, "
        "follow-ups, cautions, a lane paused).",
        "check": "Can this scope be replayed, and what blocks it? Exit code 0: yes; 2: blocked.",
        "apply": "Apply a replay (a saved plan, or a scope planned now), compare-and-set, exactly "
        "once. Exit code 2 when conflicts were left for review; 3 when writes were refused or "
        "failed, or verification found a mismatch.",
    },
}


def _register(group: click.Group, direction: Direction) -> None:
    """The plan, check and apply commands of one direction."""

    @group.command("plan", help=_HELP[direction]["plan"])
    @_verb
    @_scope_options
    @click.option(
        "--runbook",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write the plan as a markdown runbook.",
    )
    @click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Save the plan sealed (and record it), to approve and apply it later with --plan.",
    )
    @actor_option
    def plan_(
        db: str | None,
        as_json: bool,
        config: str | None,
        policy: str,
        runbook: Path | None,
        out: Path | None,
        actor: str,
        **scope: Any,
    ) -> None:
        planned = plan_and_save(
            open_db(db),
            config,
            _scope(scope),
            policy=policy,
            direction=direction,
            missing_parent=scope["missing_parent"],
            planner=actor,
            out=out,
        )
        result = planned.plan
        if runbook:
            runbook.write_text(result.runbook())

        def human() -> None:
            click.echo(result.runbook())
            for tripped in planned.trips:
                done = "paused" if tripped.paused_now else "was already paused"
                click.echo(f"lane {tripped.workflow} {done}: {tripped.trip.describe()}")
            if planned.saved is not None:
                click.echo(f"saved to {planned.saved.path} (seal {planned.saved.seal})")

        emit(as_json, planned.to_json(), human)
        sys.exit(Exit.REVIEW if planned.for_review else Exit.DONE)

    @group.command("check", help=_HELP[direction]["check"])
    @_verb
    @_scope_options
    def check(db: str | None, as_json: bool, config: str | None, policy: str, **scope: Any) -> None:
        result = _plan(db, config, policy, direction, scope)
        found = ScopeCheck.of(result)

        def human() -> None:
            counts = (
                ", ".join(f"{n} to {kind}" for kind, n in sorted(found.kinds.items())) or "nothing"
            )
            done = (
                f"; {len(result.already_rolled_back)} already rolled back"
                if result.already_rolled_back
                else ""
            )
            click.echo(f"{result.scope.describe()}: {counts}{done}")
            if found.blockers:
                click.echo(f"blocked by {len(found.blockers)} conflict(s) under policy {policy}:")
                table(
                    ["entity", "reason", "fields"],
                    ([b.entity, b.reason, ", ".join(b.fields)] for b in found.blockers),
                )
            else:
                click.echo("nothing blocks it")
            for caution in result.cautions:
                click.echo(f"caution: {caution.entity}: {caution.reason}")

        emit(as_json, found.to_json(), human)
        sys.exit(Exit.REVIEW if found.blocked else Exit.DONE)

    @group.command("apply", help=_HELP[direction]["apply"])
    @_verb
    @_scope_options
    @click.option(
        "--plan",
        "saved",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="A plan saved by `rollback plan --out`.",
    )
    @actor_option
    @click.option(
        "--on-failure",
        type=click.Choice(ON_FAILURE),
        default="continue",
        show_default=True,
        help="When the target refuses a record: go on with the rest, or stop (apply again "
        "to resume).",
    )
    def apply_(
        db: str | None,
        as_json: bool,
        config: str | None,
        policy: str,
        saved: Path | None,
        actor: str,
        on_failure: str,
        **scope: Any,
    ) -> None:
        chosen: RollbackPlan | None = None
        # A bad plan file or scope is refused before anything is opened.
        if saved is not None:
            chosen = _saved_plan(saved, scope)
        asked = _scope(scope)
        load_lanes(config)  # a bad lane row is refused before anything is opened
        ledger = open_db(db)
        if chosen is None:
            with configured_systems(config) as adapters:
                chosen = plan_with(
                    ledger,
                    adapters,
                    config,
                    asked,
                    policy=policy,
                    direction=direction,
                    missing_parent=scope["missing_parent"],
                    planner=actor,
                )
        with click.progressbar(
            length=len(chosen.compensations), label="rolling back", file=sys.stderr
        ) as bar:
            report = apply_configured(
                ledger, config, chosen, actor=actor, on_progress=bar.update, on_failure=on_failure
            )

        def human() -> None:
            counts = (
                ", ".join(f"{n} {kind}" for kind, n in sorted(report.counts.items())) or "nothing"
            )
            click.echo(f"{chosen.verb} {chosen.id} (batch {chosen.batch}): {counts}")
            if report.finished:
                click.echo(
                    f"already applied: {chosen.verb} {chosen.id} was applied to the end before "
                    f"(batch {chosen.batch} is closed); nothing was done"
                )
            elif not chosen.compensations and chosen.already_rolled_back:
                click.echo(
                    f"already applied: {len(chosen.already_rolled_back)} record(s) of this "
                    f"scope were {'rolled back' if direction == 'undo' else 'replayed'} "
                    "before; nothing was done"
                )
            table(
                ["entity", "outcome", "reason / error"],
                ([o["entity"], o["outcome"], _detail(o)] for o in report.outcomes),
            )
            for conflict in chosen.conflicts:
                click.echo(
                    f"conflict (left for review): {conflict.entity}: {conflict.reason} "
                    f"on {', '.join(conflict.fields)}"
                )
            if report.needs_attention:
                click.echo(f"needs attention: {len(report.needs_attention)} record(s)")
            if report.finished:
                verdict = "verified when it was applied"
            elif report.mismatches:
                verdict = f"MISMATCHES: {report.mismatches}"
            else:
                verdict = "verified"
            click.echo(f"verification: {verdict}")

        emit(as_json, report.to_json(), human)
        if report.mismatches or report.refused:
            sys.exit(Exit.REFUSED)
        sys.exit(Exit.REVIEW if report.needs_attention or for_review(chosen) else Exit.DONE)


def _saved_plan(saved: Path, scope: dict[str, Any]) -> RollbackPlan:
    """A plan saved by `plan --out`, given without a scope or planning options."""
    context = click.get_current_context()
    return load_saved_plan(
        saved,
        scope_given=any(v for k, v in scope.items() if k != "missing_parent"),
        planning_options_given=[
            name
            for name in PLANNING_OPTIONS
            if context.get_parameter_source(name) is ParameterSource.COMMANDLINE
        ],
    )


def _plan(
    db: str | None, config: str | None, policy: str, direction: Direction, scope: dict[str, Any]
) -> RollbackPlan:
    """Plan the scope the options name, with the configured systems; reads only."""
    return plan_configured(
        db,
        config,
        _scope(scope),
        policy=policy,
        direction=direction,
        missing_parent=scope["missing_parent"],
    )


def _detail(outcome: dict[str, Any]) -> str | None:
    if "as" in outcome:
        return f"as {outcome['as']} (a key the system chose)"
    return outcome.get("reason") or outcome.get("error") or outcome.get("note")


_register(rollback, "undo")
_register(replay, "redo")


@rollback.command("approve")
@common
@errors_as_messages
@click.argument("plan", metavar="PLAN_FILE_OR_ID")
@actor_option
def approve(db: str | None, as_json: bool, plan: str, actor: str) -> None:
    """Approve a saved rollback (or replay) plan, bound to its sealed content: someone other
    than its planner must (two-person rule). PLAN_FILE_OR_ID is the file `plan --out` saved,
    or its id (see `ledger rollback plans`). Applying refuses the plan if it is altered since.
    Exit code 0: approved; 1: refused."""
    approval = approve_saved(open_db(db), plan, actor)
    saved = approval.saved
    emit(
        as_json,
        approval.to_json(),
        lambda: click.echo(
            f"plan {saved.plan} (planned by {saved.planner}) approved by {actor} for "
            f"{', '.join(saved.workflows)}, bound to its seal {saved.seal}"
        ),
    )


@rollback.command("plans")
@common
@errors_as_messages
def plans(db: str | None, as_json: bool) -> None:
    """Every saved rollback and replay plan (`plan --out`, and those a lane made when it
    tripped): who planned it, why, its approvals and whether it was applied."""
    found = rollback_plans(open_db(db))
    emit(
        as_json,
        [p.to_json() for p in found],
        lambda: table(
            ["plan", "planned by", "workflows", "approved by", "status", "saved at", "reason"],
            (
                [
                    p.saved.plan,
                    p.saved.planner,
                    ", ".join(p.saved.workflows),
                    ", ".join(sorted({a.approver for a in p.approvals})) or "-",
                    p.status,
                    p.saved.path,
                    p.saved.reason,
                ]
                for p in found
            ),
        ),
    )


@rollback.command("status")
@common
@errors_as_messages
def status(db: str | None, as_json: bool) -> None:
    """Every rollback applied so far, with how many records it changed."""
    views = [b for b in open_db(db).batches() if b.workflow == "rollback"]
    emit(
        as_json,
        [v.to_json() for v in views],
        lambda: table(
            ["rollback batch", "status", "records", "opened_at"],
            ([v.name, v.status, v.actions, v.opened_at.isoformat()] for v in views),
        ),
    )
