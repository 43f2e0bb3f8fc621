"""Applying changes through a configured system's adapter (scope ``apply``), as `ledger apply`
does: every write compare-and-set, recorded exactly once. The step a no-code tool calls
instead of writing to the system directly: a change someone overtook is refused as stale
(409, with both values), never written over."""

from __future__ import annotations

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
from ledger.api.models import Answer, Applied
from ledger.application import Ledger
from ledger.change_files import BatchOptions
from ledger.config import load_systems, open_adapter
from ledger.errors import InvalidChange
from ledger.file_runs import FileRun, checked_for
from ledger.tokens import TokenView

router = APIRouter(prefix="/v1", tags=["write"])
KEYS = (
    "system",
    "batch",
    "changes",
    "workflow",
    "workflow_version",
    "trigger",
    "limit",
    "stop_on_stale",
    "keep_open",
)


@router.post(
    "/apply",
    response_model=None,
    responses={
        200: {"model": Applied, "description": "Every change applied (or applied before)"},
        409: {"model": Applied, "description": "Some changes refused: see refused, outcomes"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ApplyRequest"}}
            },
        }
    },
)
def apply(
    request: Request,
    token: Annotated[TokenView, Depends(require("apply"))],
    body: Annotated[bytes, Depends(read_body)],
) -> Response:
    """Write changes to a system compare-and-set and record them, as one run (batch)."""
    ledger: Ledger = request.app.state.ledger
    config: str | None = request.app.state.config
    return answer_once(request, token, body, lambda: _apply(ledger, config, token, body))


def _apply(ledger: Ledger, config: str | None, token: TokenView, body: bytes) -> Answer:
    data = json_object(body)
    unknown_keys(data, KEYS)
    system, batch = text(data, "system"), text(data, "batch")
    if not system or not batch:
        missing = "system" if not system else "batch"
        raise InvalidChange(f"missing required field {missing!r}", field=missing)
    limit = data.get("limit")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise InvalidChange("limit must be a whole number of at least 1", field="limit")
    items: Any = data.get("changes")
    changes = changes_of(items)
    options = BatchOptions(
        batch=batch,
        workflow=text(data, "workflow"),
        workflow_version=text(data, "workflow_version"),
        actor=token.name,
        trigger=text(data, "trigger"),
    )
    check_actor(token, changes)
    check_systems(token, [system], "system")
    check_workflows(token, [c.workflow or options.workflow for c in changes])
    if system not in load_systems(config):
        raise InvalidChange(f"no system named {system!r} is configured", field="system")
    checked = checked_for(change_file(body, changes, items), system, options)
    adapter = open_adapter(system, config)
    try:
        job = FileRun(
            ledger,
            adapter,
            checked,
            options,
            limit=limit,
            stop_on_stale=flag(data, "stop_on_stale"),
            keep_open=flag(data, "keep_open"),
        )
        warnings = job.check()  # before anything is written
        summary = job.apply()
    finally:
        adapter.close()
    result = summary.to_json()
    result["warnings"] = warnings + result["warnings"]
    result["outcomes"] = [outcome.to_json() for outcome in summary.outcomes]
    if not summary.refused:
        return Answer(200, orjson.dumps(result))
    stale = sum(1 for outcome in summary.refused if outcome.status == "stale")
    result["error"] = "refused"
    result["message"] = (
        f"{len(summary.refused)} change(s) of batch {summary.batch} were not applied "
        f"({stale} stale: changed in {system} since they were drafted); see refused"
    )
    return Answer(409, orjson.dumps(result))
