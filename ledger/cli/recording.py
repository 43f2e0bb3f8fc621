"""`ledger init | record | import | checkpoint | close`: what puts actions and names into the
ledger without writing to any system."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ledger.bootstrap import resolve_db
from ledger.change_files import BatchOptions, ChangeFile, utf8_text
from ledger.changes import Change
from ledger.cli.base import emit, open_db, table, verb
from ledger.domain import Address
from ledger.encoding import parse_value
from ledger.errors import InvalidChange
from ledger.imports import PreparedImport
from ledger.points import parse_time
from ledger.views import Receipt

# The flags that describe a change (the rest say which batch it joins).
CHANGE_FLAGS = (
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


@verb("init")
def init(db: str | None, as_json: bool) -> None:
    """Create the ledger's tables (safe to run again)."""
    location = resolve_db(db)
    open_db(db, create=True).close()
    emit(
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


def _batch_options(flags: dict[str, Any]) -> BatchOptions:
    return BatchOptions(
        batch=flags.pop("batch"),
        workflow=flags.pop("workflow"),
        workflow_version=flags.pop("workflow_version"),
        actor=flags.pop("actor"),
        trigger=flags.pop("trigger"),
    )


@verb("record")
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
@click.option(
    "--source",
    multiple=True,
    metavar="NAME[@TIME]",
    help="A source record used, with its time if known (repeatable).",
)
@click.option("--effective-at", metavar="ISO8601", help="The time in the source system.")
@click.option("--fingerprint", help="Idempotency key; derived from the change when omitted.")
def record(db: str | None, as_json: bool, change_json: str | None, **flags: Any) -> None:
    """Record one change, from flags or a JSON object (CHANGE_JSON, or - for stdin)."""
    options = _batch_options(flags)
    if change_json is not None:
        described = [k for k in CHANGE_FLAGS if flags[k]]
        if described:
            raise InvalidChange(
                f"give the change either as JSON or as flags, not both (--{described[0]})"
            )
        if change_json == "-":
            change_json = utf8_text(sys.stdin.buffer.read(), "stdin")
        change = Change.from_json(change_json)
        options.refuse_contradictions([change])
    else:
        change = _change_from_flags(flags)
    ledger = open_db(db)
    receipt = ledger.record(change.with_defaults(**options.given()))
    emit(as_json, receipt.to_json(), lambda: _print_receipt(receipt))


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


def _print_receipt(receipt: Receipt) -> None:
    action = receipt.action
    state = "already recorded" if receipt.duplicate else "recorded"
    click.echo(
        f"{state}: {action.operation} {action.entity} v{action.version} "
        f"at position {action.position} in batch {action.batch}"
    )
    if action.delta:
        table(["field", "before", "after"], ([n, b, a] for n, (b, a) in action.delta.items()))


@verb("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch", help="Batch id [default: derived from the file's content].")
@click.option("--workflow")
@click.option("--workflow-version")
@click.option("--actor")
@click.option("--trigger")
@click.option("--keep-open", is_flag=True, help="Leave the batch open for more actions.")
def import_(db: str | None, as_json: bool, path: Path, keep_open: bool, **flags: Any) -> None:
    """Record a JSON Lines file of changes, all or nothing, as one batch."""
    prepared = PreparedImport.of(ChangeFile.read(path), _batch_options(flags))
    ledger = open_db(db)
    with click.progressbar(
        length=len(prepared.changes), label=f"recording {path.name}", file=sys.stderr
    ) as bar:
        summary = prepared.record(ledger, keep_open=keep_open, on_progress=bar.update)
    batches = ", ".join(summary.batches)
    emit(
        as_json,
        summary.to_json(),
        lambda: click.echo(
            f"batch {batches}: {summary.recorded} recorded, "
            f"{summary.already_recorded} already recorded"
        ),
    )


@verb("checkpoint")
@click.argument("name")
def checkpoint(db: str | None, as_json: bool, name: str) -> None:
    """Name the current position of the global log."""
    view = open_db(db).checkpoint(name)
    emit(
        as_json,
        view.to_json(),
        lambda: click.echo(f"checkpoint {view.name} = position {view.position}"),
    )


@verb("close")
@click.argument("batch")
def close(db: str | None, as_json: bool, batch: str) -> None:
    """Close a batch: no more actions may join it."""
    view = open_db(db).close_batch(batch)
    emit(
        as_json,
        view.to_json(),
        lambda: click.echo(f"batch {view.name} closed with {view.actions} actions"),
    )
