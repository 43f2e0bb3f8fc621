"""A workflow's lane over HTTP, as `ledger lanes | lane | pause | enable | canary`: pausing
easy, enabling hard.

Scopes. Reading lanes needs ``read``. Pausing needs ``apply``: it only stops writes, and the
people who run a flow must be able to pull its brake without an administrator. Enabling and
admitting a canary need ``admin``: they let writes through again, and an enable may override
the proof. The token's name is recorded as who paused or enabled. A token limited to
workflows sees and touches only their lanes (403 for another's; the list shows only theirs).

An enable refused for want of proof answers ``409`` with ``error`` = ``unproved`` and
``unmet``, each condition of the lane's re-enable rule not met, so a flow can branch on it.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from ledger.api.auth import check_workflows, require
from ledger.api.bodies import answer_once, json_object, read_body
from ledger.api.models import Answer
from ledger.api.operations_models import (
    CanaryRequest,
    Enabled,
    EnableRequest,
    LaneModel,
    Paused,
    PauseRequest,
    parsed,
)
from ledger.application import Ledger
from ledger.lane_config import configured_lanes
from ledger.lane_control import allow_canary, lane, lanes, pause_lane
from ledger.lane_enable import enable_workflow
from ledger.tokens import TokenView

router = APIRouter(prefix="/v1/lanes", tags=["lanes"])
Reader = Annotated[TokenView, Depends(require("read"))]
Workflow = Annotated[str, Path(description="The workflow's name", examples=["lead-sync"])]


def _body(model: type[Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def _json(payload: Any) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


@router.get("", response_model=None, responses={200: {"model": list[LaneModel]}})
def list_lanes(request: Request, token: Reader) -> Response:
    """Every lane (configured, or ever paused): its state, who paused it and why, its last
    trip and its last run; a token limited to workflows sees theirs."""
    ledger: Ledger = request.app.state.ledger
    views = lanes(ledger, configured_lanes(request.app.state.config))
    return _json([v.to_json() for v in views if token.allows_workflow(v.workflow)])


@router.get("/{workflow}", response_model=None, responses={200: {"model": LaneModel}})
def one_lane(request: Request, token: Reader, workflow: Workflow) -> Response:
    """One lane in full (an unknown workflow is an active lane)."""
    check_workflows(token, [workflow], "path.workflow")
    row = configured_lanes(request.app.state.config).get(workflow)
    return _json(lane(request.app.state.ledger, workflow, row).to_json())


@router.post(
    "/{workflow}/pause",
    response_model=None,
    responses={200: {"model": Paused}},
    openapi_extra=_body(PauseRequest),
)
def pause(
    request: Request,
    token: Annotated[TokenView, Depends(require("apply"))],
    body: Annotated[bytes, Depends(read_body)],
    workflow: Workflow,
) -> Response:
    """Pause a workflow at once: from its next write on, every write of it, from any process,
    answers 423 with this reason. Pausing a paused workflow changes nothing."""
    check_workflows(token, [workflow], "path.workflow")
    ledger: Ledger = request.app.state.ledger

    def execute() -> Answer:
        args = parsed(PauseRequest, json_object(body))
        result = pause_lane(ledger, workflow, args.reason, token.name)
        return Answer(
            200, orjson.dumps({"paused_now": result.paused_now, "lane": result.lane.to_json()})
        )

    return answer_once(request, token, body, execute)


@router.post(
    "/{workflow}/enable",
    response_model=None,
    responses={200: {"model": Enabled}},
    openapi_extra=_body(EnableRequest),
)
def enable(
    request: Request,
    token: Annotated[TokenView, Depends(require("admin"))],
    body: Annotated[bytes, Depends(read_body)],
    workflow: Workflow,
) -> Response:
    """Let a paused workflow act again once its lane's re-enable rule is proved by what the
    ledger holds (its collections' last reconciliation clean, a canary run with no trip, an
    approver); else 409 ``unproved`` listing each unmet condition. ``override`` enables
    without the proof and is recorded as an override, with its reason."""
    check_workflows(token, [workflow], "path.workflow")
    app = request.app.state

    def execute() -> Answer:
        args = parsed(EnableRequest, json_object(body))
        result = enable_workflow(
            app.ledger,
            workflow,
            token.name,
            args.reason,
            config=configured_lanes(app.config).get(workflow),
            approver=args.approver,
            override=args.override,
        )
        check = result.check
        payload = {
            "lane": result.lane.to_json(),
            "met": list(check.met),
            "unmet": list(check.unmet),
        }
        return Answer(200, orjson.dumps(payload))

    return answer_once(request, token, body, execute)


@router.post(
    "/{workflow}/canary",
    response_model=None,
    responses={200: {"model": LaneModel}},
    openapi_extra=_body(CanaryRequest),
)
def canary(
    request: Request,
    token: Annotated[TokenView, Depends(require("admin"))],
    body: Annotated[bytes, Depends(read_body)],
    workflow: Workflow,
) -> Response:
    """Admit one batch of at most ``limit`` actions through a paused workflow's gate: the
    canary run its re-enable rule may ask for (`POST /v1/apply` with that batch)."""
    check_workflows(token, [workflow], "path.workflow")
    ledger: Ledger = request.app.state.ledger

    def execute() -> Answer:
        args = parsed(CanaryRequest, json_object(body))
        view = allow_canary(ledger, workflow, token.name, args.batch, args.limit)
        return Answer(200, orjson.dumps(view.to_json()))

    return answer_once(request, token, body, execute)
