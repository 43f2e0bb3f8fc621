"""The `ledger` command: a thin layer over the library, tables for people and --json for machines.

Library errors become a one-line message and exit code 1 here, and only here.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from ledger.application import Ledger
from ledger.bootstrap import DB_KEY, open_ledger, resolve_db
from ledger.changes import Change, iter_changes, line_fingerprint
from ledger.domain import Address
from ledger.encoding import encode_value, parse_value
from ledger.errors import InvalidChange, LedgerError
from ledger.points import Point, parse_time
from ledger.values import ABSENT

F = TypeVar("F", bound=Callable[..., Any])


def _common(command: F) -> F:
    """--db and --json, accepted by every command."""
    command = click.option(
        "--json", "as_json", is_flag=True, help="Print JSON for machines instead of a table."
    )(command)
    return click.option(
        "--db",
        envvar=DB_KEY,
        default=None,
        help=f"SQLite file or postgresql:// URL [env {DB_KEY}; default ./ledger.db].",
    )(command)


def _errors_as_messages(command: F) -> F:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except LedgerError as error:
            raise click.ClickException(str(error)) from None

    return wrapper  # type: ignore[return-value]


def _verb(name: str) -> Callable[[F], F]:
    """Register a command with the shared options and error translation."""

    def register(command: F) -> F:
        return main.command(name)(_common(_errors_as_messages(command)))  # type: ignore[return-value]

    return register


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="changeledger")
def main() -> None:
    """changeledger: record every automation action, inspect any point in time."""


def _open(db: str | None, *, create: bool = False) -> Ledger:
    return open_ledger(db, create=create)


def _emit(as_json: bool, payload: Any, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    else:
        human()


def _table(headers: list[str], rows: Iterable[list[Any]]) -> None:
    text_rows = [[_cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    click.echo(line.rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for row in text_rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return orjson.dumps(encode_value(value)).decode()


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
@click.option("--batch", help="Batch (run) id; a new batch is opened when omitted.")
@click.option("--actor")
@click.option("--trigger")
@click.option("--source", multiple=True, help="Id of a source record used (repeatable).")
@click.option("--effective-at", metavar="ISO8601", help="The time in the source system.")
@click.option("--fingerprint", help="Idempotency key; derived from the change when omitted.")
def record(db: str | None, as_json: bool, change_json: str | None, **flags: Any) -> None:
    """Record one change, from flags or a JSON object (CHANGE_JSON, or - for stdin)."""
    batch_defaults = {
        k: flags[k] for k in ("workflow", "workflow_version", "batch", "actor", "trigger")
    }
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
        text = sys.stdin.read() if change_json == "-" else change_json
        change = Change.from_json(text)
    else:
        change = _change_from_flags(flags)
    receipt = _open(db).record(change, **batch_defaults)
    _emit(as_json, receipt.to_json(), lambda: _print_receipt(receipt))


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
    content = path.read_bytes()
    lines = content.splitlines()
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise InvalidChange(f"{path} holds no changes")
    if defaults["batch"] is None:
        defaults["batch"] = "import-" + hashlib.sha256(content).hexdigest()[:16]
    changes = [
        change
        if change.fingerprint
        else replace(
            change, fingerprint=line_fingerprint(change.batch or defaults["batch"], n, raw)
        )
        for change, (n, raw) in zip(iter_changes(lines), numbered, strict=True)
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
    summary = {
        "batch": defaults["batch"],
        "recorded": new,
        "already_recorded": len(receipts) - new,
        "closed": not keep_open,
    }
    _emit(
        as_json,
        summary,
        lambda: click.echo(
            f"batch {summary['batch']}: {new} recorded, {len(receipts) - new} already recorded"
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


def _config_option(command: F) -> F:
    return click.option(
        "--config",
        envvar="LEDGER_CONFIG",
        default=None,
        help="Systems configuration [env LEDGER_CONFIG; default ./ledger.toml].",
    )(command)


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
    when any change was refused."""
    from ledger.config import open_adapter
    from ledger.runs import Run, Target

    lines = path.read_bytes().splitlines()
    changes = list(iter_changes(lines))
    wrong = next((c for c in changes if c.address.system != system), None)
    if wrong is not None:
        raise InvalidChange(f"{wrong.address} is not in system {system!r}", field="entity")
    adapter = open_adapter(system, config)
    ledger = _open(db)
    run = Run(ledger, defaults.pop("batch"), limit=limit, stop_on_stale=stop_on_stale, **defaults)
    outcomes = []
    try:
        with click.progressbar(
            length=len(changes), label=f"applying {path.name}", file=sys.stderr
        ) as bar:
            for collection, group in _by_collection(changes):
                outcomes += run.apply(Target(adapter, collection), group, on_progress=bar.update)
    finally:
        adapter.close()
    if not keep_open and (run.counts["applied"] or run.counts["already_applied"]):
        ledger.close_batch(run.batch)
    refused = [o for o in outcomes if o.status in ("stale", "failed")]
    summary = {
        "batch": run.batch,
        "counts": dict(run.counts),
        "refused": [o.to_json() for o in refused],
    }

    def human() -> None:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(run.counts.items()))
        click.echo(f"batch {run.batch}: {counts}")
        if refused:
            _table(
                ["entity", "status", "field", "expected", "actual", "error"],
                ([o.entity, o.status, o.field, o.expected, o.actual, o.error] for o in refused),
            )

    _emit(as_json, summary, human)
    if refused:
        sys.exit(3)


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
