"""Replays over HTTP (scope ``rollback``): redo a scope's changes, as `ledger replay` does
(after a mistaken rollback, or onto a rebuilt target). One route, three modes: ``check``
(what blocks it; reads only), ``plan`` (saved sealed and recorded, like a rollback's plan:
read, approve and apply it under ``/v1/rollbacks/{plan}``), ``apply`` (a saved replay plan,
or the scope planned now). A replay writes to the systems exactly as a rollback does, so it
takes the same scope as reverting."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ledger.api.auth import require
from ledger.api.bodies import answer_once, read_body
from ledger.api.models import Answer
from ledger.api.plans import applied, check_plan, planned, scope_of, validated
from ledger.api.rollback_models import Planned, ReplayRequest, RollbackApplied, ScopeCheck
from ledger.application import Ledger
from ledger.config import configured_systems
from ledger.errors import InvalidChange
from ledger.rollback import RollbackPlan
from ledger.rollback_requests import (
    ScopeCheck as Check,
)
from ledger.rollback_requests import (
    apply_configured,
    load_recorded_plan,
    plan_and_save,
    plan_with,
)
from ledger.tokens import TokenView

router = APIRouter(prefix="/v1", tags=["rollback"])


@router.post(
    "/replays",
    response_model=None,
    responses={
        200: {"model": ScopeCheck | RollbackApplied, "description": "check; apply"},
        201: {"model": Planned, "description": "plan: saved and recorded"},
        409: {"model": RollbackApplied, "description": "apply: writes refused, or a mismatch"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ReplayRequest"}}
            },
        }
    },
)
def replay(
    request: Request,
    token: Annotated[TokenView, Depends(require("rollback"))],
    body: Annotated[bytes, Depends(read_body)],
) -> Response:
    """Check, plan or apply the replay of a scope (``mode``)."""
    ledger: Ledger = request.app.state.ledger
    config: str | None = request.app.state.config

    def execute() -> Answer:
        asked = validated(ReplayRequest, body)
        if asked.mode == "apply" and asked.plan is not None:
            chosen = _saved_replay(ledger, token, asked)
            report = apply_configured(
                ledger, config, chosen, actor=token.name, on_failure=asked.on_failure
            )
            return applied(chosen, report)
        if asked.plan is not None:
            raise InvalidChange("plan is given with mode apply only", field="plan")
        scope = scope_of(token, asked)
        if asked.mode == "plan":
            made = plan_and_save(
                ledger,
                config,
                scope,
                policy=asked.policy,
                direction="redo",
                missing_parent=asked.missing_parent,
                planner=token.name,
                directory=request.app.state.plans_dir,
                admit=lambda made: check_plan(token, made, acting=True),
            )
            return Answer(201, orjson.dumps(planned(made)))
        with configured_systems(config) as adapters:
            chosen = plan_with(
                ledger,
                adapters,
                config,
                scope,
                policy=asked.policy,
                direction="redo",
                missing_parent=asked.missing_parent,
                planner=token.name,
            )
        check_plan(token, chosen, acting=True)
        if asked.mode == "check":
            return Answer(200, orjson.dumps(Check.of(chosen).to_json()))
        report = apply_configured(
            ledger, config, chosen, actor=token.name, on_failure=asked.on_failure
        )
        return applied(chosen, report)

    return answer_once(request, token, body, execute)


def _saved_replay(ledger: Ledger, token: TokenView, asked: ReplayRequest) -> RollbackPlan:
    """A saved replay plan, given alone: it is its own scope and keeps the options it was
    made with."""
    given = sorted(asked.model_fields_set - {"mode", "plan", "on_failure"})
    if given:
        raise InvalidChange(
            f"give plan or a scope, not both: {given[0]} applies when planning", field=given[0]
        )
    _, chosen = load_recorded_plan(ledger, str(asked.plan))
    if chosen.direction != "redo":
        raise InvalidChange(
            f"plan {chosen.id} is a rollback's; apply it at /v1/rollbacks/{chosen.id}/apply",
            field="plan",
        )
    check_plan(token, chosen, acting=True)
    return chosen
