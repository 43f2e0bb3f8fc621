"""Reading the ledger over HTTP (scope ``read``): a record now or at a point, its history, a
collection page by page, a diff, batches and checkpoints. Nothing is written.

A point is ``at=`` in the CLI's ``--at`` syntax (`ledger.points.Point`): an ISO time,
``version:N``, ``checkpoint:NAME`` (or a bare name), ``position:N``, ``effective:TIME``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from itertools import dropwhile
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from ledger.api.auth import check_systems, require
from ledger.api.models import Action as ActionModel
from ledger.api.models import Batch, Checkpoint, CollectionPage, Difference, RecordState
from ledger.application import Ledger
from ledger.domain import Address
from ledger.errors import InvalidChange
from ledger.points import Point
from ledger.tokens import TokenView
from ledger.views import EntityState

router = APIRouter(prefix="/v1", tags=["read"])
Reader = Annotated[TokenView, Depends(require("read"))]
At = Annotated[
    str | None,
    Query(
        description="time (ISO 8601 with offset), version:N, checkpoint:NAME, position:N, "
        "effective:TIME; default now",
        examples=["checkpoint:before-sync"],
    ),
]


def _ledger(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


def _json(payload: Any) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


def point(text: str | None, field: str = "query.at") -> Point | None:
    if text is None:
        return None
    try:
        return Point.parse(text)
    except InvalidChange as error:
        raise InvalidChange(error.reason, field=field) from None


def _address(system: str, collection: str, key: str) -> Address:
    return Address.parse(f"{system}/{collection}/{key}")


# The history route is declared first: a key may hold slashes, so ".../42/history" means
# the history of 42 (the record route cannot name a key that itself ends in "/history").
@router.get(
    "/records/{system}/{collection}/{key:path}/history",
    response_model=None,
    responses={200: {"model": list[ActionModel]}},
)
def history(request: Request, token: Reader, system: str, collection: str, key: str) -> Response:
    """Every action on one record, oldest first (then at its new key, if it moved)."""
    check_systems(token, [system], "path.system")
    actions = _ledger(request).history(_address(system, collection, key))
    return _json([action.to_json() for action in actions])


@router.get(
    "/records/{system}/{collection}/{key:path}",
    response_model=None,
    responses={200: {"model": RecordState}},
)
def record(
    request: Request, token: Reader, system: str, collection: str, key: str, at: At = None
) -> Response:
    """One record's fields, now or at a point."""
    check_systems(token, [system], "path.system")
    state = _ledger(request).state(_address(system, collection, key), point(at))
    return _json(state.to_json())


@router.get(
    "/collections/{system}/{collection}",
    response_model=None,
    responses={200: {"model": CollectionPage}},
)
def collection(
    request: Request,
    token: Reader,
    system: str,
    collection: str,
    at: At = None,
    cursor: Annotated[
        str | None, Query(description="next_cursor of the previous page (it keeps the point)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    deleted: bool = False,
) -> Response:
    """Every record of a collection at a point, in key order, a page at a time (streamed).
    Without ``at`` the first page pins the log's current position, so later pages show the
    same moment."""
    check_systems(token, [system], "path.system")
    ledger = _ledger(request)
    Address(system, collection, "-").check()
    if cursor is not None:
        if at is not None:
            raise InvalidChange(
                "give at= with the first page only: the cursor keeps the point", field="query.at"
            )
        at_text, after, deleted = _decode_cursor(cursor)
    else:
        at_text, after = at or f"position:{ledger.recorder.max_notification_id() or 0}", None
    resolved = point(at_text)
    ledger.cutoff(resolved)  # an unknown checkpoint is refused before streaming starts
    records: Iterator[EntityState] = ledger.collection(
        system, collection, resolved, deleted=deleted
    )
    if after is not None:
        records = dropwhile(lambda state: _key(state) <= after, records)
    first = next(records, None)
    return StreamingResponse(
        _page(first, records, limit, at_text, deleted), media_type="application/json"
    )


def _page(
    first: EntityState | None,
    rest: Iterator[EntityState],
    limit: int,
    at_text: str,
    deleted: bool,
) -> Iterator[bytes]:
    """The page as JSON, record by record; a cursor only when another record follows."""
    yield b'{"records":['
    cursor = None
    if first is not None:
        yield orjson.dumps(first.to_json())
        last, count = first, 1
        for state in rest:
            if count == limit:
                cursor = _encode_cursor(at_text, _key(last), deleted)
                break
            yield b"," + orjson.dumps(state.to_json())
            last, count = state, count + 1
    yield b'],"next_cursor":' + orjson.dumps(cursor) + b"}"


def _key(state: EntityState) -> str:
    return state.entity.split("/", 2)[2]


def _encode_cursor(at_text: str, after: str, deleted: bool) -> str:
    raw = orjson.dumps({"at": at_text, "after": after, "deleted": deleted})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str, bool]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        at_text, after, deleted = data["at"], data["after"], data["deleted"]
        if not (isinstance(at_text, str) and isinstance(after, str) and type(deleted) is bool):
            raise TypeError
    except (binascii.Error, ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        raise InvalidChange(
            "cursor is not one this API gave out; start again without it", field="query.cursor"
        ) from None
    return at_text, after, deleted


@router.get("/diff", response_model=None, responses={200: {"model": list[Difference]}})
def diff(
    request: Request,
    token: Reader,
    target: Annotated[str, Query(description="system/collection or system/collection/key")],
    from_: Annotated[str, Query(alias="from", description="A point, as at=")],
    to: Annotated[str | None, Query(description="A point; default now")] = None,
) -> Response:
    """What changed in a record or a collection between two points."""
    ledger = _ledger(request)
    a, b = point(from_, "query.from"), point(to, "query.to")
    parts = target.split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise InvalidChange(
            f"target {target!r} is not system/collection or system/collection/key",
            field="query.target",
        )
    check_systems(token, [parts[0]], "query.target")
    if len(parts) >= 3:
        one = ledger.diff(Address.parse(target), a, b)
        differences = [one] if one else []
    else:
        Address(parts[0], parts[1], "-").check()
        differences = list(ledger.diff_collection(parts[0], parts[1], a, b))
    return _json([difference.to_json() for difference in differences])


@router.get("/batches", response_model=None, responses={200: {"model": list[Batch]}})
def batches(request: Request, token: Reader) -> Response:
    """Every batch (workflow run), oldest first; a token limited to workflows sees theirs."""
    views = _ledger(request).batches()
    return _json([v.to_json() for v in views if token.allows_workflow(v.workflow)])


@router.get("/checkpoints", response_model=None, responses={200: {"model": list[Checkpoint]}})
def checkpoints(request: Request, token: Reader) -> Response:
    """Every named checkpoint."""
    return _json([v.to_json() for v in _ledger(request).checkpoints()])
