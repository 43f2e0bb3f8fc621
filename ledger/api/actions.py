"""Recording actions after the fact (scope ``record``): one change, or several as one batch,
in the change-file line format of `ledger record` and `ledger import`. The token's name is
the actor; a change may not name another."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ledger.api.auth import check_actor, check_systems, check_workflows, require
from ledger.api.bodies import (
    answer_once,
    change_file,
    changes_of,
    flag,
    json_object,
    read_body,
    text,
    unknown_keys,
)
from ledger.api.models import Answer, Receipt, Recorded
from ledger.application import Ledger
from ledger.change_files import BatchOptions
from ledger.changes import Change
from ledger.imports import PreparedImport
from ledger.tokens import TokenView

router = APIRouter(prefix="/v1", tags=["write"])
BATCH_KEYS = ("changes", "batch", "workflow", "workflow_version", "trigger", "keep_open")


@router.post(
    "/actions",
    response_model=None,
    status_code=201,
    responses={
        201: {"model": Receipt | Recorded, "description": "Recorded"},
        200: {"model": Receipt | Recorded, "description": "Recorded before: nothing new"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/ChangeLine"},
                            {"$ref": "#/components/schemas/ChangeBatch"},
                        ]
                    }
                }
            },
        }
    },
)
def record_actions(
    request: Request,
    token: Annotated[TokenView, Depends(require("record"))],
    body: Annotated[bytes, Depends(read_body)],
) -> Response:
    """Record one change (a change-file line), or ``{"changes": [...]}`` all or nothing as
    one batch. A change recorded before (same fingerprint) is answered, not recorded again."""
    ledger: Ledger = request.app.state.ledger
    return answer_once(request, token, body, lambda: _record(ledger, token, body))


def _record(ledger: Ledger, token: TokenView, body: bytes) -> Answer:
    data = json_object(body)
    if "changes" not in data:
        change = Change.from_mapping(data)
        check_actor(token, [change], located=False)
        _check(token, [change], BatchOptions(actor=token.name))
        receipt = ledger.record(change.with_defaults(actor=token.name))
        return Answer(200 if receipt.duplicate else 201, orjson.dumps(receipt.to_json()))
    unknown_keys(data, BATCH_KEYS)
    items: Any = data["changes"]
    changes = changes_of(items)
    options = BatchOptions(
        batch=text(data, "batch"),
        workflow=text(data, "workflow"),
        workflow_version=text(data, "workflow_version"),
        actor=token.name,
        trigger=text(data, "trigger"),
    )
    _check(token, changes, options)
    prepared = PreparedImport.of(change_file(body, changes, items), options)
    summary = prepared.record(ledger, keep_open=flag(data, "keep_open"))
    return Answer(201 if summary.recorded else 200, orjson.dumps(summary.to_json()))


def _check(token: TokenView, changes: Sequence[Change], options: BatchOptions) -> None:
    """The token acts for these systems and workflows, as itself."""
    check_actor(token, changes)
    options.refuse_contradictions(changes)
    check_systems(token, [c.address.system for c in changes])
    check_workflows(token, [c.workflow or options.workflow for c in changes])
