"""Rollbacks over HTTP: plan (saved sealed and recorded, scope ``rollback``), read the plan,
its compensations page by page and its runbook (``read``), approve it (``approve``: someone
other than its planner, the two-person rule with token names as identities), apply it
(``rollback``) as `ledger rollback apply --plan` does: newest first, compare-and-set, exactly
once, resumable; conflicts are listed, never written over.

A plan is addressed by its id; the routes read it from where it was saved (the server's plans
directory, `ledger serve --plans-dir`) and refuse a file whose content is not the one
recorded. The routes serve replay plans too (their ``verb`` says so).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from ledger.api.auth import require
from ledger.api.bodies import answer_once, read_body
from ledger.api.errors import Problem
from ledger.api.models import Answer
from ledger.api.plans import (
    applied,
    check_plan,
    planned,
    scope_of,
    status_of,
    summary,
    validated,
    visible,
)
from ledger.api.rollback_models import (
    ApplyPlanRequest,
    ApprovalRequest,
    Approved,
    CompensationPage,
    PlanDetail,
    PlanListed,
    RollbackApplied,
    RollbackRequest,
)
from ledger.api.rollback_models import Planned as PlannedModel
from ledger.application import Ledger
from ledger.errors import InvalidChange
from ledger.rollback import (
    RollbackPlan,
    SavedPlan,
    approve_rollback_plan,
    rollback_plans,
)
from ledger.rollback.plan import compensation_json
from ledger.rollback_requests import apply_configured, load_recorded_plan, plan_and_save
from ledger.tokens import TokenView

router = APIRouter(prefix="/v1", tags=["rollback"])
Reader = Annotated[TokenView, Depends(require("read"))]
Roller = Annotated[TokenView, Depends(require("rollback"))]
Approver = Annotated[TokenView, Depends(require("approve"))]
Body = Annotated[bytes, Depends(read_body)]


def _body(model: str, required: bool = True) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its body itself."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
        }
    }


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, media_type="application/json")


def _ledger(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


@router.post(
    "/rollbacks",
    response_model=None,
    status_code=201,
    responses={201: {"model": PlannedModel, "description": "Planned, saved and recorded"}},
    openapi_extra=_body("RollbackRequest"),
)
def plan(request: Request, token: Roller, body: Body) -> Response:
    """Plan the rollback of a scope (nothing is written to any system), save it sealed in the
    plans directory and record it with the token as its planner, to approve and apply. A plan
    with more conflicts than a lane's ``rollback_conflicts`` pauses that lane (``trips``)."""
    ledger, config = _ledger(request), request.app.state.config

    def execute() -> Answer:
        asked = validated(RollbackRequest, body)
        made = plan_and_save(
            ledger,
            config,
            scope_of(token, asked),
            policy=asked.policy,
            direction="undo",
            missing_parent=asked.missing_parent,
            planner=token.name,
            directory=request.app.state.plans_dir,
            admit=lambda made: check_plan(token, made, acting=True),
        )
        return Answer(201, orjson.dumps(planned(made)))

    return answer_once(request, token, body, execute)


@router.get("/rollbacks", response_model=None, responses={200: {"model": list[PlanListed]}})
def plans(request: Request, token: Reader) -> Response:
    """Every saved rollback and replay plan, oldest first, with its approvals and status
    (a token limited to workflows sees theirs)."""
    found = rollback_plans(_ledger(request))
    return _json([p.to_json() for p in found if visible(token, p.saved)])


def _recorded(
    request: Request, token: TokenView, plan: str, *, acting: bool
) -> tuple[SavedPlan, RollbackPlan]:
    saved, loaded = load_recorded_plan(_ledger(request), plan)
    check_plan(token, loaded, acting=acting)
    return saved, loaded


@router.get("/rollbacks/{plan}", response_model=None, responses={200: {"model": PlanDetail}})
def read_plan(request: Request, token: Reader, plan: str) -> Response:
    """A saved plan: its summary and conflicts, its approvals, and how far it was applied
    (not applied, applying: unfinished, applied, verified), from what the ledger recorded."""
    saved, loaded = _recorded(request, token, plan, acting=False)
    status = status_of(_ledger(request), saved)
    return _json(
        {
            **summary(loaded),
            "saved": saved.to_json(),
            "approved_by": sorted({a.approver for a in status.approvals}),
            "status": status.status,
            "verification": None if status.verification is None else status.verification.to_json(),
        }
    )


@router.get(
    "/rollbacks/{plan}/compensations",
    response_model=None,
    responses={200: {"model": CompensationPage}},
)
def compensations(
    request: Request,
    token: Reader,
    plan: str,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """The plan's compensations in the order applying writes them, a page at a time."""
    _, loaded = _recorded(request, token, plan, acting=False)
    start = 0 if cursor is None else _decode_cursor(cursor, loaded.seal)
    items = [compensation_json(c) for c in loaded.compensations[start : start + limit]]
    end = start + len(items)
    more = end < len(loaded.compensations)
    return _json(
        {"compensations": items, "next_cursor": _encode_cursor(end, loaded.seal) if more else None}
    )


def _encode_cursor(after: int, seal: str) -> str:
    raw = orjson.dumps({"after": after, "seal": seal})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, seal: str) -> int:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = data["after"]
        if type(after) is not int or after < 0 or data["seal"] != seal:
            raise ValueError
    except (binascii.Error, ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        raise InvalidChange(
            "cursor is not one this API gave out for this plan; start again without it",
            field="query.cursor",
        ) from None
    return int(after)


@router.get(
    "/rollbacks/{plan}/runbook",
    response_model=None,
    responses={
        200: {
            "description": "The runbook (markdown)",
            "content": {"text/markdown": {"schema": {"type": "string"}}},
        }
    },
)
def runbook(request: Request, token: Reader, plan: str) -> Response:
    """The plan as a markdown runbook to read, approve and keep."""
    _, loaded = _recorded(request, token, plan, acting=False)
    return Response(loaded.runbook(), media_type="text/markdown")


@router.post(
    "/rollbacks/{plan}/approvals",
    response_model=None,
    status_code=201,
    responses={201: {"model": Approved, "description": "Approved (again: no change)"}},
    openapi_extra=_body("ApprovalRequest", required=False),
)
def approve(request: Request, token: Approver, plan: str, body: Body) -> Response:
    """Approve a saved plan, bound to its seal, in the lane of each workflow it reverses. The
    token's name is the approver: the token that planned it cannot (403)."""
    ledger = _ledger(request)

    def execute() -> Answer:
        asked = validated(ApprovalRequest, body)
        saved, loaded = _recorded(request, token, plan, acting=True)
        if asked.seal is not None and asked.seal != saved.seal:
            raise Problem(
                409,
                "conflict",
                f"plan {plan} is saved with seal {saved.seal}, not {asked.seal}: it is not the "
                "content you read; read it again",
                field="seal",
                expected=asked.seal,
                actual=saved.seal,
            )
        approval = approve_rollback_plan(ledger, loaded, token.name)
        return Answer(201, orjson.dumps(approval.to_json()))

    return answer_once(request, token, body, execute)


@router.post(
    "/rollbacks/{plan}/apply",
    response_model=None,
    responses={
        200: {"model": RollbackApplied, "description": "Applied (or applied before)"},
        409: {"model": RollbackApplied, "description": "Writes refused, or a mismatch"},
    },
    openapi_extra=_body("ApplyPlanRequest", required=False),
)
def apply(request: Request, token: Roller, plan: str, body: Body) -> Response:
    """Apply a saved plan through the systems' adapters, newest change first, each write
    compare-and-set against what the plan expects, exactly once: posting again after an
    interruption finishes the rest and re-applies nothing. A two-person lane's plan must be
    approved (exactly this content) first: otherwise nothing is written (409)."""
    ledger, config = _ledger(request), request.app.state.config

    def execute() -> Answer:
        asked = validated(ApplyPlanRequest, body)
        _, loaded = _recorded(request, token, plan, acting=True)
        report = apply_configured(
            ledger, config, loaded, actor=token.name, on_failure=asked.on_failure
        )
        return applied(loaded, report)

    return answer_once(request, token, body, execute)
