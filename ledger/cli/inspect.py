"""`ledger history | state | collection | diff | checkpoints | batches`: reading the ledger,
now or at any point in time; nothing is written."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

import click
import orjson

from ledger.cli.base import emit, open_db, table, verb
from ledger.domain import Address
from ledger.errors import InvalidChange
from ledger.points import Point


def _point(text: str | None) -> Point | None:
    return Point.parse(text) if text else None


def _split_collection(text: str) -> tuple[str, str]:
    system, sep, collection = text.partition("/")
    if not sep or not system or not collection or "/" in collection:
        raise InvalidChange(f"collection {text!r} is not of the form system/collection")
    return system, collection


@verb("history")
@click.argument("entity")
def history(db: str | None, as_json: bool, entity: str) -> None:
    """Every action on one record, oldest first (then at its new key, if it moved)."""
    actions = open_db(db).history(Address.parse(entity))
    emit(
        as_json,
        [a.to_json() for a in actions],
        lambda: table(
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


@verb("state")
@click.argument("entity")
@click.option("--at", "at", metavar="POINT", help="time, checkpoint, position:N, version:N.")
@click.option("--version", type=int, help="Shorthand for --at version:N.")
def state(db: str | None, as_json: bool, entity: str, at: str | None, version: int | None) -> None:
    """One record's fields, now or at a point."""
    if at and version is not None:
        raise InvalidChange("give --at or --version, not both")
    point = Point("version", version) if version is not None else _point(at)
    view = open_db(db).state(Address.parse(entity), point)

    def human() -> None:
        status = "exists" if view.exists else "does not exist"
        for old in view.moved_from:
            click.echo(f"{old} moved to a key the system chose; following it")
        click.echo(f"{view.entity} v{view.version} ({status}) at position {view.position}")
        if view.moved_to:
            click.echo(f"it lives on as {view.moved_to}")
        table(["field", "value"], ([n, v] for n, v in sorted(view.fields.items())))

    emit(as_json, view.to_json(), human)


@verb("collection")
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
    records: Iterator[Any] = open_db(db).collection(system, name, _point(at), deleted=deleted)
    if limit is not None:
        records = islice(records, limit)
    if as_json:
        for record_ in records:  # JSON Lines: constant memory however large the collection
            click.echo(orjson.dumps(record_.to_json()).decode())
        return
    table(
        ["entity", "version", "exists", "fields"],
        ([r.entity, r.version, r.exists, r.fields] for r in records),
    )


@verb("diff")
@click.argument("target")
@click.argument("from_point", metavar="FROM")
@click.argument("to_point", metavar="[TO]", required=False)
def diff(db: str | None, as_json: bool, target: str, from_point: str, to_point: str | None) -> None:
    """What changed in a record or a collection between two points (TO defaults to now)."""
    ledger = open_db(db)
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
        table(["entity", "change", "field", "from", "to"], rows)

    emit(as_json, [d.to_json() for d in differences], human)


@verb("checkpoints")
def checkpoints(db: str | None, as_json: bool) -> None:
    """Every named checkpoint."""
    views = open_db(db).checkpoints()
    emit(
        as_json,
        [v.to_json() for v in views],
        lambda: table(
            ["checkpoint", "position", "created_at"],
            ([v.name, v.position, v.created_at.isoformat()] for v in views),
        ),
    )


@verb("batches")
def batches(db: str | None, as_json: bool) -> None:
    """Every batch (workflow run) with its status and action count."""
    views = open_db(db).batches()
    emit(
        as_json,
        [v.to_json() for v in views],
        lambda: table(
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
