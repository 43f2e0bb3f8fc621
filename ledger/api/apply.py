"""Applying changes through a configured system's adapter (scope ``apply``), as `ledger apply`
does: every write compare-and-set, recorded exactly once. The step a no-code tool calls
instead of writing to the system directly: a change someone overtook is refused as stale
(409, with both values), never written over.

The workflow's lane is asked as `ledger apply` asks it: a paused lane refuses the run before
anything is written (423, the pause's reason); a stop trigger that trips mid-run stops it
there (423, with the run's summary, the trigger and, for a ``plan-rollback`` lane, the
rollback it planned and saved). A trip in the run's last chunk is 423 too, though every
change landed: the lane is paused from then on, and the flow must branch on that now, not
at its next request."""

from __future__ import annotations

from pathlib import Path
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
from ledger.api.errors import problem_of
from ledger.api.models import Answer, Applied
from ledger.api.plans import links
from ledger.api.rollback_models import Stopped
from ledger.application import Ledger
from ledger.change_files import BatchOptions
from ledger.config import load_systems, open_adapter
from ledger.errors import InvalidChange, LanePaused, LedgerError
from ledger.file_runs import FileRun, FileRunSummary, checked_for
from ledger.lane_config import load_lanes
from ledger.rollback_requests import plan_on_trip
from ledger.tokens import TokenView
from ledger.triggers import Trip

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
        423: {"model": Stopped, "description": "The lane is paused, or tripped during the run"},
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
    plans: Path = request.app.state.plans_dir
    return answer_once(request, token, body, lambda: _apply(ledger, config, plans, token, body))


def _apply(
    ledger: Ledger, config: str | None, plans: Path, token: TokenView, body: bytes
) -> Answer:
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
    lanes = load_lanes(config)
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
            lanes=lanes,
        )
        warnings = job.check()  # before anything is written
        summary = job.apply()
    finally:
        adapter.close()
    result = summary.to_json()
    result["warnings"] = warnings + result["warnings"]
    result["outcomes"] = [outcome.to_json() for outcome in summary.outcomes]
    trip, workflow = summary.lane["trip"], summary.lane["workflow"]
    if trip is not None and workflow:
        result["rollback_plan"] = _plan_on_trip(ledger, config, plans, workflow, batch, trip)
    if trip is not None or (summary.stopped == "paused" and summary.left):
        return _stopped(ledger, summary, result)
    if not summary.refused:
        return Answer(200, orjson.dumps(result))
    stale = sum(1 for outcome in summary.refused if outcome.status == "stale")
    result["error"] = "refused"
    result["message"] = (
        f"{len(summary.refused)} change(s) of batch {summary.batch} were not applied "
        f"({stale} stale: changed in {system} since they were drafted); see refused"
    )
    return Answer(409, orjson.dumps(result))


def _plan_on_trip(
    ledger: Ledger,
    config: str | None,
    plans: Path,
    workflow: str,
    batch: str,
    trip: dict[str, Any],
) -> dict[str, Any] | None:
    """The rollback a ``plan-rollback`` lane plans when it trips (as `ledger apply --json`
    gives it), with the links that read, approve and apply it; an error when it could not be
    planned (the trip and the pause stand either way)."""
    try:
        planned = plan_on_trip(
            ledger, workflow, batch, Trip(trip["trigger"], trip["rule"], {}), config, plans
        )
    except LedgerError as error:
        return {
            "error": f"the rollback of batch {batch} was not planned: {error}; plan it with "
            f'POST /v1/rollbacks {{"batches": ["{batch}"]}}'
        }
    if planned is None:
        return None
    plan, path = planned
    return {"plan": plan.id, "path": str(path), "links": links(plan.id)}


def _stopped(ledger: Ledger, summary: FileRunSummary, result: dict[str, Any]) -> Answer:
    """423: the lane stopped the run (paused by someone meanwhile, or tripped by this run's
    triggers): what landed is recorded, the rest was not written."""
    workflow = summary.lane["workflow"]
    trip = summary.lane["trip"]
    problem = problem_of(LanePaused(summary.pause or "paused", workflow=workflow), ledger)
    if trip is not None:
        message = (
            f"workflow {workflow!r} paused by stop trigger {trip['trigger']}: {trip['rule']}; "
            f"{summary.done} change(s) of batch {summary.batch} landed (recorded), "
            f"{summary.left} were not written"
        )
    else:
        message = f"{summary.pause}; {summary.left} change(s) were not written"
    body = {**result, **problem.details, "error": "paused", "message": message}
    return Answer(423, orjson.dumps(body))
