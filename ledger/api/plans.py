"""What the rollback and replay routes share: their bodies validated, a scope built as the
CLI builds it, who may see and act on a plan, and a plan summarized without its
compensations (they are paged), with the links that read the rest."""

from __future__ import annotations

from itertools import chain
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from ledger.api.auth import check_systems, check_workflows
from ledger.api.bodies import json_object
from ledger.api.errors import Problem
from ledger.api.models import Answer
from ledger.api.rollback_models import Scope
from ledger.application import Ledger
from ledger.domain import Address
from ledger.errors import InvalidChange
from ledger.rollback import (
    PlanStatus,
    RollbackPlan,
    RollbackReport,
    RollbackScope,
    SavedPlan,
    rollback_plans,
)
from ledger.rollback_requests import Planned, ScopeCheck, rollback_scope
from ledger.tokens import TokenView

Body = TypeVar("Body", bound=BaseModel)


def validated(model: type[Body], body: bytes) -> Body:
    """The body (an empty one is ``{}``) as ``model``, or a 422 naming the first bad field."""
    data = json_object(body) if body.strip() else {}
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        path = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidChange(f"{path}: {first['msg']}", field=path) from None


def scope_of(token: TokenView, asked: Scope) -> RollbackScope:
    """The scope asked for, by the CLI's rules (a field named as in the body); a token
    limited to workflows or systems must name one of its own in it."""
    try:
        scope = rollback_scope(
            asked.batches, asked.workflow, asked.since, asked.system, asked.collection
        )
    except InvalidChange as error:
        field = (error.field or "scope").removeprefix("--")
        raise InvalidChange(error.reason.replace("--", ""), field=field) from None
    if token.workflows:
        check_workflows(token, [scope.workflow])
    if scope.system is not None:
        check_systems(token, [scope.system], "system")
    return scope


def check_plan(token: TokenView, plan: RollbackPlan, *, acting: bool) -> None:
    """403 unless the token may see (``acting=False``) or plan, approve and apply this plan:
    every record it names in the token's systems; to act, a token limited to workflows needs
    a scope naming one of them (then every action in it is that workflow's); to see, every
    workflow the plan reverses must be one of them."""
    if token.workflows:
        if acting:
            check_workflows(token, [plan.scope.workflow])
        else:
            check_workflows(token, plan.workflows or [None])
    if token.systems:
        entities = chain(
            (c.entity for c in plan.compensations),
            (c.entity for c in plan.conflicts),
            (f.entity for f in plan.followups),
            plan.already_rolled_back,
        )
        check_systems(token, sorted({Address.parse(e).system for e in entities}), "plan")


def visible(token: TokenView, saved: SavedPlan) -> bool:
    """Whether a saved plan is listed to the token (as batches are: by workflow)."""
    return not token.workflows or bool(
        saved.workflows and all(token.allows_workflow(w) for w in saved.workflows)
    )


def links(plan: str) -> dict[str, str]:
    base = f"/v1/rollbacks/{plan}"
    return {
        "plan": base,
        "compensations": f"{base}/compensations",
        "runbook": f"{base}/runbook",
        "approvals": f"{base}/approvals",
        "apply": f"{base}/apply",
    }


def summary(plan: RollbackPlan) -> dict[str, Any]:
    """The plan as JSON (`RollbackPlan.to_json`) without its compensations: their counts
    per kind, and the link to page them."""
    full = plan.to_json()
    kinds = ScopeCheck.of(plan).kinds
    return {
        "plan": plan.id,
        "seal": plan.seal,
        "verb": plan.verb,
        "batch": plan.batch,
        "scope": full["scope"],
        "policy": plan.policy,
        "missing_parent": plan.missing_parent,
        "position": plan.position,
        "planner": plan.planner,
        "workflows": list(plan.workflows),
        "aborted": plan.aborted,
        "counts": {
            "compensations": len(plan.compensations),
            "conflicts": len(plan.conflicts),
            "followups": len(plan.followups),
            "cautions": len(plan.cautions),
            "already_rolled_back": len(plan.already_rolled_back),
        },
        "kinds": kinds,
        "conflicts": full["conflicts"],
        "followups": full["followups"],
        "cautions": full["cautions"],
        "already_rolled_back": full["already_rolled_back"],
        "links": links(plan.id),
    }


def planned(made: Planned) -> dict[str, Any]:
    """`POST /v1/rollbacks` (and a replay's ``plan``): the summary, where it was saved, the
    lanes its conflicts paused."""
    assert made.saved is not None, "the API saves every plan it makes"
    return {
        **summary(made.plan),
        "saved": made.saved.to_json(),
        "trips": [trip.to_json() for trip in made.trips],
    }


def status_of(ledger: Ledger, saved: SavedPlan) -> PlanStatus:
    """The plan's approvals and how far it was applied."""
    for found in rollback_plans(ledger):
        if found.saved.plan == saved.plan and found.saved.seal == saved.seal:
            return found
    raise Problem(404, "not_found", f"no saved rollback plan {saved.plan!r}")


def applied(chosen: RollbackPlan, report: RollbackReport) -> Answer:
    """The report as `ledger rollback apply --json` prints it, with the plan's conflicts;
    409 when writes were refused or failed, or a record read back does not hold the planned
    state."""
    result = {**report.to_json(), "conflicts": summary(chosen)["conflicts"]}
    if report.refused:
        result["error"] = "refused"
        result["message"] = (
            f"{len(report.refused)} compensation(s) of {chosen.verb} {chosen.id} were not "
            "written (changed since the plan, failed or not attempted); see outcomes, and "
            "apply again to resume failed ones"
        )
        return Answer(409, orjson.dumps(result))
    if report.mismatches:
        result["error"] = "mismatch"
        result["message"] = (
            f"{len(report.mismatches)} record(s) do not hold what {chosen.verb} {chosen.id} "
            "wrote; see verification"
        )
        return Answer(409, orjson.dumps(result))
    return Answer(200, orjson.dumps(result))
