"""The `ledger` command: a thin layer over the library, tables for people and --json for machines.

Library errors, and the failures a user can meet and fix (a database unreachable, locked or
read-only, input that is not UTF-8), become a one-line message and exit code 1 here, and
only here. Every command exits with a code of the one table in `ledger.cli_exit`.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

import click
import orjson

from ledger.bootstrap import resolve_db
from ledger.changes import Change, iter_changes, line_fingerprint
from ledger.cli_base import (
    _config_option,
    _emit,
    _open,
    _read_lines,
    _table,
    _utf8,
    _verb,
    main,
)
from ledger.cli_exit import Exit
from ledger.domain import Address
from ledger.encoding import parse_value
from ledger.errors import CanaryLimit, InvalidChange, LedgerError, StaleWrite
from ledger.points import Point, parse_time

__all__ = ["main"]  # the `ledger` entry point

BATCH_OPTIONS = ("batch", "workflow", "workflow_version", "actor", "trigger")


def _point(text: str | None) -> Point | None:
    return Point.parse(text) if text else None


@_verb("init")
def init(db: str | None, as_json: bool) -> None:
    """Create the ledger's tables (safe to run again)."""
    location = resolve_db(db)
    _open(db, create=True).close()
    _emit(
        as_json, {"db": location, "ready": True}, lambda: click.echo(f"ledger ready at {location}")
    )


def _pairs(items: tuple[str, ...], option: str, as_json: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InvalidChange(f"{option} {item!r} must look like FIELD=VALUE", field=option)
        if name in result:
            raise InvalidChange(f"{option} names field {name!r} twice", field=option)
        result[name] = parse_value(value, where=f"{option} {name}") if as_json else value
    return result


@_verb("record")
@click.argument("change_json", required=False)
@click.option("--entity", help="system/collection/key of the record.")
@click.option("--op", type=click.Choice(["create", "update", "delete"]), help="The operation.")
@click.option("--set", "set_", multiple=True, metavar="FIELD=TEXT", help="Set a field to text.")
@click.option(
    "--set-json", multiple=True, metavar="FIELD=JSON", help="Set a field to a JSON value."
)
@click.option("--unset", multiple=True, metavar="FIELD", help="Remove a field.")
@click.option("--before", multiple=True, metavar="FIELD=TEXT", help="Expected before-value (text).")
@click.option("--before-json", multiple=True, metavar="FIELD=JSON", help="Expected before-value.")
@click.option("--inputs", metavar="JSON", help="The inputs that drove the action (a JSON object).")
@click.option("--workflow")
@click.option("--workflow-version")
@click.option(
    "--batch", help="Batch (run) id [default: one of its own, named for the change (retry-safe)]."
)
@click.option("--actor")
@click.option("--trigger")
@click.option("--source", multiple=True, help="Id of a source record used (repeatable).")
@click.option("--effective-at", metavar="ISO8601", help="The time in the source system.")
@click.option("--fingerprint", help="Idempotency key; derived from the change when omitted.")
def record(db: str | None, as_json: bool, change_json: str | None, **flags: Any) -> None:
    """Record one change, from flags or a JSON object (CHANGE_JSON, or - for stdin)."""
    batch_defaults = {k: flags[k] for k in BATCH_OPTIONS}
    if change_json is not None:
        described = [
            k
            for k in (
                "entity",
                "op",
                "set_",
                "set_json",
                "unset",
                "before",
                "before_json",
                "inputs",
                "source",
                "effective_at",
                "fingerprint",
            )
            if flags[k]
        ]
        if described:
            raise InvalidChange(
                f"give the change either as JSON or as flags, not both (--{described[0]})"
            )
        if change_json == "-":
            change_json = _utf8(sys.stdin.buffer.read(), "stdin")
        change = Change.from_json(change_json)
        _refuse_contradictions([change], batch_defaults)
    else:
        change = _change_from_flags(flags)
    ledger = _open(db)
    receipt = ledger.record(change.with_defaults(**batch_defaults))
    _emit(as_json, receipt.to_json(), lambda: _print_receipt(receipt))


def _refuse_contradictions(
    changes: Sequence[Change], options: dict[str, Any], lines: Sequence[int] | None = None
) -> None:
    """A change that names another batch, workflow, actor… than an option given for all of
    them is refused naming its line, before anything is recorded or written."""
    for number, change in enumerate(changes):
        for name, given in options.items():
            own = getattr(change, name)
            if given is not None and own is not None and own != given:
                option = name.replace("_", "-")
                raise InvalidChange(
                    f"{change.address}: the change says {name} {own!r} but --{option} says "
                    f"{given!r}; remove one of them",
                    line=lines[number] if lines is not None else None,
                    field=name,
                )


def _change_from_flags(flags: dict[str, Any]) -> Change:
    if not flags["entity"] or not flags["op"]:
        raise InvalidChange("give --entity and --op (or the change as a JSON object)")
    before = {
        **_pairs(flags["before"], "--before", False),
        **_pairs(flags["before_json"], "--before-json", True),
    }
    inputs = parse_value(flags["inputs"], where="--inputs") if flags["inputs"] else {}
    if not isinstance(inputs, dict):
        raise InvalidChange("--inputs must be a JSON object", field="--inputs")
    return Change(
        address=Address.parse(flags["entity"]),
        operation=flags["op"],
        values={
            **_pairs(flags["set_"], "--set", False),
            **_pairs(flags["set_json"], "--set-json", True),
        },
        unset=tuple(flags["unset"]),
        before=before or None,
        inputs=inputs,
        sources=tuple(flags["source"]),
        effective_at=parse_time(flags["effective_at"], "--effective-at")
        if flags["effective_at"]
        else None,
        fingerprint=flags["fingerprint"],
    )


def _print_receipt(receipt: Any) -> None:
    action = receipt.action
    state = "already recorded" if receipt.duplicate else "recorded"
    click.echo(
        f"{state}: {action.operation} {action.entity} v{action.version} "
        f"at position {action.position} in batch {action.batch}"
    )
    _print_delta(action.delta)


def _print_delta(delta: dict[str, tuple[Any, Any]]) -> None:
    if delta:
        _table(["field", "before", "after"], ([n, b, a] for n, (b, a) in delta.items()))


@_verb("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch", help="Batch id [default: derived from the file's content].")
@click.option("--workflow")
@click.option("--workflow-version")
@click.option("--actor")
@click.option("--trigger")
@click.option("--keep-open", is_flag=True, help="Leave the batch open for more actions.")
def import_(db: str | None, as_json: bool, path: Path, keep_open: bool, **defaults: Any) -> None:
    """Record a JSON Lines file of changes, all or nothing, as one batch."""
    content, lines = _read_lines(path)
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise InvalidChange(f"{path} holds no changes")
    parsed = list(iter_changes(lines))
    _refuse_contradictions(parsed, defaults, [n for n, _ in numbered])
    if defaults["batch"] is None:
        defaults["batch"] = "import-" + hashlib.sha256(content).hexdigest()[:16]
    changes = [
        change
        if change.fingerprint
        else replace(
            change, fingerprint=line_fingerprint(change.batch or defaults["batch"], n, raw)
        )
        for change, (n, raw) in zip(parsed, numbered, strict=True)
    ]
    ledger = _open(db)
    with click.progressbar(
        length=len(changes), label=f"recording {path.name}", file=sys.stderr
    ) as bar:
        receipts = ledger.record_all(
            changes,
            line_numbers=[n for n, _ in numbered],
            close_batch=not keep_open,
            on_progress=bar.update,
            **defaults,
        )
    new = sum(1 for receipt in receipts if not receipt.duplicate)
    batches = sorted({receipt.action.batch for receipt in receipts})
    summary = {
        "batch": batches[0] if len(batches) == 1 else None,
        "batches": batches,
        "recorded": new,
        "already_recorded": len(receipts) - new,
        "closed": not keep_open,
    }
    _emit(
        as_json,
        summary,
        lambda: click.echo(
            f"batch {', '.join(batches)}: {new} recorded, {len(receipts) - new} already recorded"
        ),
    )


@_verb("history")
@click.argument("entity")
def history(db: str | None, as_json: bool, entity: str) -> None:
    """Every action on one record, oldest first (then at its new key, if it moved)."""
    actions = _open(db).history(Address.parse(entity))
    _emit(
        as_json,
        [a.to_json() for a in actions],
        lambda: _table(
            [
                "record",
                "version",
                "position",
                "recorded_at",
                "operation",
                "batch",
                "workflow",
                "changed",
            ],
            (
                [
                    a.entity,
                    a.version,
                    a.position,
                    a.recorded_at.isoformat(),
                    a.operation,
                    a.batch,
                    a.workflow,
                    ", ".join(a.delta),
                ]
                for a in actions
            ),
        ),
    )


@_verb("state")
@click.argument("entity")
@click.option("--at", "at", metavar="POINT", help="time, checkpoint, position:N, version:N.")
@click.option("--version", type=int, help="Shorthand for --at version:N.")
def state(db: str | None, as_json: bool, entity: str, at: str | None, version: int | None) -> None:
    """One record's fields, now or at a point."""
    if at and version is not None:
        raise InvalidChange("give --at or --version, not both")
    point = Point("version", version) if version is not None else _point(at)
    view = _open(db).state(Address.parse(entity), point)

    def human() -> None:
        status = "exists" if view.exists else "does not exist"
        for old in view.moved_from:
            click.echo(f"{old} moved to a key the system chose; following it")
        click.echo(f"{view.entity} v{view.version} ({status}) at position {view.position}")
        if view.moved_to:
            click.echo(f"it lives on as {view.moved_to}")
        _table(["field", "value"], ([n, v] for n, v in sorted(view.fields.items())))

    _emit(as_json, view.to_json(), human)


def _split_collection(text: str) -> tuple[str, str]:
    system, sep, collection = text.partition("/")
    if not sep or not system or not collection or "/" in collection:
        raise InvalidChange(f"collection {text!r} is not of the form system/collection")
    return system, collection


@_verb("collection")
@click.argument("collection")
@click.option("--at", "at", metavar="POINT", help="time, checkpoint or position:N.")
@click.option("--limit", type=int, help="Show at most this many records.")
@click.option("--deleted", is_flag=True, help="Include records deleted by then.")
def collection(
    db: str | None,
    as_json: bool,
    collection: str,
    at: str | None,
    limit: int | None,
    deleted: bool,
) -> None:
    """Every record of SYSTEM/COLLECTION, now or at a point, in key order (streamed)."""
    system, name = _split_collection(collection)
    records: Iterator[Any] = _open(db).collection(system, name, _point(at), deleted=deleted)
    if limit is not None:
        records = islice(records, limit)
    if as_json:
        for record_ in records:  # JSON Lines: constant memory however large the collection
            click.echo(orjson.dumps(record_.to_json()).decode())
        return
    _table(
        ["entity", "version", "exists", "fields"],
        ([r.entity, r.version, r.exists, r.fields] for r in records),
    )


@_verb("diff")
@click.argument("target")
@click.argument("from_point", metavar="FROM")
@click.argument("to_point", metavar="[TO]", required=False)
def diff(db: str | None, as_json: bool, target: str, from_point: str, to_point: str | None) -> None:
    """What changed in a record or a collection between two points (TO defaults to now)."""
    ledger = _open(db)
    a, b = Point.parse(from_point), _point(to_point)
    if target.count("/") >= 2:
        one = ledger.diff(Address.parse(target), a, b)
        differences = [one] if one else []
    else:
        differences = list(ledger.diff_collection(*_split_collection(target), a, b))

    def human() -> None:
        if not differences:
            click.echo("no differences")
            return
        rows = (
            [d.entity, d.change, f, x, y] for d in differences for f, (x, y) in d.fields.items()
        )
        _table(["entity", "change", "field", "from", "to"], rows)

    _emit(as_json, [d.to_json() for d in differences], human)


@_verb("checkpoint")
@click.argument("name")
def checkpoint(db: str | None, as_json: bool, name: str) -> None:
    """Name the current position of the global log."""
    view = _open(db).checkpoint(name)
    _emit(
        as_json,
        view.to_json(),
        lambda: click.echo(f"checkpoint {view.name} = position {view.position}"),
    )


@_verb("checkpoints")
def checkpoints(db: str | None, as_json: bool) -> None:
    """Every named checkpoint."""
    views = _open(db).checkpoints()
    _emit(
        as_json,
        [v.to_json() for v in views],
        lambda: _table(
            ["checkpoint", "position", "created_at"],
            ([v.name, v.position, v.created_at.isoformat()] for v in views),
        ),
    )


@_verb("batches")
def batches(db: str | None, as_json: bool) -> None:
    """Every batch (workflow run) with its status and action count."""
    views = _open(db).batches()
    _emit(
        as_json,
        [v.to_json() for v in views],
        lambda: _table(
            ["batch", "workflow", "status", "actions", "opened_at", "positions"],
            (
                [
                    v.name,
                    v.workflow,
                    v.status,
                    v.actions,
                    v.opened_at.isoformat(),
                    f"{v.first_position}-{v.last_position}" if v.first_position else "",
                ]
                for v in views
            ),
        ),
    )


@_verb("close")
@click.argument("batch")
def close(db: str | None, as_json: bool, batch: str) -> None:
    """Close a batch: no more actions may join it."""
    view = _open(db).close_batch(batch)
    _emit(
        as_json,
        view.to_json(),
        lambda: click.echo(f"batch {view.name} closed with {view.actions} actions"),
    )


@_verb("apply")
@_config_option
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
    **defaults: Any,
) -> None:
    """Apply a JSON Lines file of changes to a system through its adapter, and record them.

    Every write is compare-and-set: a record someone changed since it was read (or whose
    `expected` values no longer hold) is refused as stale, never overwritten. Exit code 3
    when any change was refused, failed or left pending; 2 when a canary stopped with changes
    left, or outside values were found right after writes (conflicts, on systems without
    conditional writes)."""
    from ledger.config import open_adapter
    from ledger.runs import Outcome, Run, Target

    _, lines = _read_lines(path)
    numbered = [n for n, line in enumerate(lines, start=1) if line.strip()]
    changes = list(iter_changes(lines))
    for change, number in zip(changes, numbered, strict=True):
        if change.address.system != system:
            raise InvalidChange(
                f"{change.address} is not in system {system!r}", line=number, field="entity"
            )
    _refuse_contradictions(changes, defaults, numbered)
    adapter = open_adapter(system, config)
    outcomes: list[Outcome] = []
    stopped: CanaryLimit | StaleWrite | None = None
    started = time.monotonic()
    run: Run | None = None
    try:
        ledger = _open(db)
        batch = defaults.pop("batch")
        run = Run(ledger, batch, limit=limit, stop_on_stale=stop_on_stale, **defaults)
        for collection, group in _by_collection(changes):  # before anything is written
            keys = [c.address.key for c in group if c.operation != "create"]
            for warning in run.check(Target(adapter, collection), keys):
                click.echo(f"warning: {warning}", err=True)
        with click.progressbar(
            length=len(changes), label=f"applying {path.name}", file=sys.stderr
        ) as bar:
            for collection, group in _by_collection(changes):
                outcomes += run.apply(Target(adapter, collection), group, on_progress=bar.update)
    except (CanaryLimit, StaleWrite) as error:
        stopped = error  # the run counted what it did before it stopped
    except LedgerError as error:
        landed = run.counts["applied"] if run is not None else 0
        if not landed:
            raise
        raise click.ClickException(
            f"{error} -- the run stopped after {landed} write(s) of batch {batch} had "
            "landed (recorded); run the same command again to go on (nothing is applied twice)"
        ) from None
    finally:
        adapter.close()
    assert run is not None  # only the run itself raises what is caught above
    refused = [o for o in outcomes if o.status in ("stale", "failed", "pending")]
    if isinstance(stopped, StaleWrite):
        refused.append(
            Outcome(stopped.record, "stale", None, stopped.field, stopped.expected, stopped.actual)
        )
    conflicts = [o for o in outcomes if o.conflict]
    left = len(changes) - sum(run.counts.values())
    done = run.counts["applied"] + run.counts["already_applied"]
    # A batch with refused, pending or unapplied lines stays open, so the fixed lines can join
    # it and `recover` can record a pending write there.
    closed = not keep_open and not refused and not left and done > 0
    if closed:
        ledger.close_batch(batch)
    activity = getattr(adapter, "activity", None)  # adapters that count their requests
    warnings: list[str] = run.warnings + (activity.warnings if activity else [])
    summary = {
        "batch": batch,
        "counts": dict(run.counts),
        "refused": [o.to_json() for o in refused],
        "conflicts": [o.to_json() for o in conflicts],
        "left": left,
        "stopped": {CanaryLimit: "canary limit", StaleWrite: "stale"}.get(type(stopped)),
        "closed": closed,
        "elapsed_seconds": round(time.monotonic() - started, 3),
        "retries": run.retries + (activity.retries if activity else 0),
        "waited_seconds": round(activity.waited, 3) if activity else 0.0,
        "warnings": warnings,
    }

    def human() -> None:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(run.counts.items()))
        click.echo(
            f"batch {batch}: {counts or 'nothing applied'} in {summary['elapsed_seconds']:.1f} s "
            f"({summary['retries']} retries, {summary['waited_seconds']:.1f} s waiting)"
        )
        for warning in warnings:
            click.echo(f"warning: {warning}")
        if refused:
            _table(
                ["entity", "status", "field", "expected", "actual", "error"],
                ([o.entity, o.status, o.field, o.expected, o.actual, o.error] for o in refused),
            )
        if run.counts["pending"]:
            click.echo("pending writes may have landed: run `ledger recover` once it answers")
        if conflicts:
            click.echo("conflicts: outside values found right after these writes (review them)")
            _table(
                ["entity", "field", "written", "found"],
                ([o.entity, o.field, o.expected, o.actual] for o in conflicts),
            )
        if isinstance(stopped, CanaryLimit):
            click.echo(
                f"stopped at the canary limit of {limit} action(s): {left} change(s) left; "
                "run the file again with a higher --limit, or none, to apply them"
            )
        elif isinstance(stopped, StaleWrite):
            click.echo(f"stopped at the first refused write (--stop-on-stale): {left} left")
        if (refused or left) and not keep_open and done:
            click.echo(
                f"batch {batch} stays open: run the fixed lines into it again "
                f"(`ledger close {batch}` gives up on the rest)"
            )

    _emit(as_json, summary, human)
    if refused:
        sys.exit(Exit.REFUSED)
    if left or conflicts:
        sys.exit(Exit.REVIEW)


def _by_collection(changes: list[Change]) -> Iterator[tuple[str, list[Change]]]:
    """Consecutive changes to the same collection, in file order."""
    group: list[Change] = []
    for change in changes:
        if group and change.address.collection != group[-1].address.collection:
            yield group[-1].address.collection, group
            group = []
        group.append(change)
    if group:
        yield group[-1].address.collection, group


@_verb("recover")
@_config_option
@click.option("--batch", help="Only this batch's unsettled writes.")
def recover_(db: str | None, as_json: bool, config: str | None, batch: str | None) -> None:
    """Settle writes a crash left unconfirmed, by reading what each target holds now."""
    from ledger.config import open_adapters
    from ledger.runs import recover

    adapters = open_adapters(config)
    try:
        outcomes = recover(_open(db), adapters, batch=batch)
    finally:
        for adapter in adapters.values():
            adapter.close()
    _emit(
        as_json,
        [o.to_json() for o in outcomes],
        lambda: click.echo(
            f"{len(outcomes)} unsettled write(s): "
            + (", ".join(f"{o.entity} {o.status}" for o in outcomes[:20]) or "nothing to do")
        ),
    )


# Command groups that live in their own modules register themselves on `main`.
import ledger.cli_reconcile  # noqa: E402
import ledger.cli_rollback  # noqa: E402
import ledger.cli_track  # noqa: E402, F401
