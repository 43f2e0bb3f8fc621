"""Reconciling over HTTP, as `ledger reconcile check|plan|apply`: the ledger's account of a
collection against the system itself.

Scopes. ``check`` and ``plan`` need ``read``: they read the system and change nothing in it.
A check of now is recorded, as the CLI's is (the evidence a lane's ``reconciled`` re-enable
rule asks for; lanes whose ``drift_share`` it exceeds are paused): that record is the server's
own measurement, nothing the caller supplies, so a reader cannot forge a clean one, and a
pause only stops writes. ``apply`` needs ``admin``: it writes corrections over a whole
collection with no per-change review (under ``policy: ledger``, every outside edit is
overwritten), which is more than the ``apply`` scope of a no-code flow writing its own
changes; it writes as workflow ``reconcile``, so a token limited to workflows must name it.
Every route is limited to the token's systems.

Large reports are paged: the counts cover the whole collection, the drifted records (check)
and the plan's steps (plan) come ``limit`` records at a time in key order, ``next_cursor``
leading to the next page. Each page compares afresh (the system may have moved); only the
first page of a check is recorded.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ledger.api.auth import check_systems, check_workflows, require
from ledger.api.bodies import answer_once, json_object, read_body
from ledger.api.models import Answer
from ledger.api.operations_models import (
    DriftPage,
    PlanPage,
    ReconcileApplied,
    ReconcileApplyRequest,
    ReconcileCheckRequest,
    ReconcilePlanRequest,
    parsed,
)
from ledger.application import Ledger
from ledger.config import load_systems, open_adapter
from ledger.errors import InvalidChange
from ledger.lane_config import configured_lanes
from ledger.points import Point
from ledger.ports import Adapter
from ledger.reconcile import (
    SAMPLES,
    Drift,
    ReconcilePlan,
    ReconcileScope,
    apply_reconciliation,
    compare_in_scope,
    plan_reconciliation,
    record_report,
)
from ledger.reconcile.report import Tally
from ledger.tokens import TokenView

router = APIRouter(prefix="/v1/reconcile", tags=["reconcile"])
RECONCILE_WORKFLOW = "reconcile"  # the workflow `apply_reconciliation` writes as
# The library names its options as the CLI spells them; the API's fields are these.
FIELDS = {
    "--policy": "policy",
    "--at": "at",
    "--delete-unknown": "delete_unknown",
    "--field-rule": "field_rules",
}


def _body(model: type[ReconcileCheckRequest]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


@router.post(
    "/check",
    response_model=None,
    responses={200: {"model": DriftPage}},
    openapi_extra=_body(ReconcileCheckRequest),
)
def check(
    request: Request,
    token: Annotated[TokenView, Depends(require("read"))],
    body: Annotated[bytes, Depends(read_body)],
) -> Response:
    """Report the drift between the ledger and the system; change nothing in the system.
    A check of now (no ``at``, not ``tracked_only``) is recorded as lane evidence and pauses
    the lanes whose drift_share it exceeds (first page only)."""
    app = request.app.state
    return answer_once(request, token, body, lambda: _check(app, token, body))


@router.post(
    "/plan",
    response_model=None,
    responses={200: {"model": PlanPage}},
    openapi_extra=_body(ReconcilePlanRequest),
)
def plan(
    request: Request,
    token: Annotated[TokenView, Depends(require("read"))],
    body: Annotated[bytes, Depends(read_body)],
) -> Response:
    """Plan the corrections under an explicit policy (ledger: correct the system; target:
    adopt the system's values into the ledger); change nothing. A read: no Idempotency-Key."""
    args = parsed(ReconcilePlanRequest, json_object(body))
    app = request.app.state
    with _opened(app, token, args) as (ledger, adapter):
        made = _planned(ledger, adapter, args)
    return Response(
        orjson.dumps(_plan_page(made, args.cursor, args.limit)), media_type="application/json"
    )


@router.post(
    "/apply",
    response_model=None,
    responses={
        200: {"model": ReconcileApplied, "description": "Applied (verification: what is left)"},
        409: {"model": ReconcileApplied, "description": "Some corrections refused (stale)"},
    },
    openapi_extra=_body(ReconcileApplyRequest),
)
def apply(
    request: Request,
    token: Annotated[TokenView, Depends(require("admin"))],
    body: Annotated[bytes, Depends(read_body)],
) -> Response:
    """Plan now and apply the corrections exactly once, compare-and-set (an edit made since
    the plan is refused as stale, never overwritten), then compare again (recorded)."""
    app = request.app.state
    return answer_once(request, token, body, lambda: _apply(app, token, body))


def _check(app: Any, token: TokenView, body: bytes) -> Answer:
    """`check_reconciliation`'s two steps (tally the comparison, `record_report` it), with
    the page of drifts kept in the same pass over the comparison."""
    args = parsed(ReconcileCheckRequest, json_object(body))
    after = _after(args.cursor)
    with _opened(app, token, args) as (ledger, adapter):
        scope = _scope(args)
        comparison = compare_in_scope(ledger, adapter, args.collection, scope)
        tally, page, more = Tally(SAMPLES), list[Drift](), False
        for drift in comparison:
            tally.add(drift)
            if after is None or drift.key > after:
                more = more or not _room(page, drift, args.limit)
                if not more:
                    page.append(drift)
        report = tally.report(comparison)
        recorded = None
        if after is None:
            lanes = configured_lanes(app.config)
            recorded = record_report(ledger, report, scope, actor=token.name, lanes=lanes)
    answer = {
        **report.to_json(),
        "recorded": None if recorded is None else recorded.to_json(),
        "drifts": [drift.to_json() for drift in page],
        "next_cursor": _cursor(page[-1].key) if more else None,
    }
    return Answer(200, orjson.dumps(answer))


def _room(page: list[Drift], drift: Drift, limit: int) -> bool:
    """Whether ``drift`` goes on this page: under the limit, or of the page's last record (a
    record's drifts are never split across pages, so the cursor is a key)."""
    return len(page) < limit or drift.key == page[-1].key


def _apply(app: Any, token: TokenView, body: bytes) -> Answer:
    args = parsed(ReconcileApplyRequest, json_object(body))
    check_workflows(token, [RECONCILE_WORKFLOW])
    lanes = configured_lanes(app.config)
    with _opened(app, token, args) as (ledger, adapter):
        made = _planned(ledger, adapter, args)
        result = apply_reconciliation(ledger, adapter, made, actor=token.name, lanes=lanes)
    done = result.to_json()
    answer = {
        **done,
        "plan": _plan_page(made, None, args.limit),
        "refused": done["refused"][: args.limit],
        "refused_total": len(done["refused"]),
        "skipped": done["skipped"][: args.limit],
        "skipped_total": len(done["skipped"]),
    }
    if not result.refused:
        return Answer(200, orjson.dumps(answer))
    answer["error"] = "refused"
    answer["message"] = (
        f"{len(result.refused)} correction(s) of plan {made.id} were not applied (changed in "
        f"{made.system} or in the ledger since the plan was made, or refused by the system); "
        "see refused, then check and plan again"
    )
    return Answer(409, orjson.dumps(answer))


class _opened:
    """The ledger and the system's adapter for a request within the token's systems."""

    def __init__(self, app: Any, token: TokenView, args: ReconcileCheckRequest):
        check_systems(token, [args.system], "system")
        systems = load_systems(app.config)
        if args.system not in systems:
            raise InvalidChange(f"no system named {args.system!r} is configured", field="system")
        known = systems[args.system].get("collections", {})
        if args.collection not in known:
            raise InvalidChange(
                f"system {args.system!r} has no collection {args.collection!r}; known: "
                f"{', '.join(sorted(known))}",
                field="collection",
            )
        self.ledger: Ledger = app.ledger
        self.system = args.system
        self.config: str | None = app.config

    def __enter__(self) -> tuple[Ledger, Adapter]:
        self.adapter = open_adapter(self.system, self.config)
        return self.ledger, self.adapter

    def __exit__(self, *exc: object) -> None:
        self.adapter.close()


def _scope(args: ReconcileCheckRequest) -> ReconcileScope:
    at = None
    if args.at is not None:
        try:
            at = Point.parse(args.at)
        except InvalidChange as error:
            raise InvalidChange(error.reason, field="at") from None
    return ReconcileScope(at, args.tracked_only, args.all_fields, args.null_is_absent)


def _planned(ledger: Ledger, adapter: Adapter, args: ReconcilePlanRequest) -> ReconcilePlan:
    scope = _scope(args)
    try:
        return plan_reconciliation(
            ledger,
            adapter,
            args.collection,
            args.policy,
            scope.at,
            field_rules=args.field_rules,
            delete_unknown=args.delete_unknown,
            tracked_only=scope.tracked_only,
            all_fields=scope.all_fields,
            null_is_absent=scope.null_is_absent,
        )
    except InvalidChange as error:
        if error.field not in FIELDS:
            raise
        raise InvalidChange(error.reason, field=FIELDS[error.field]) from None


def _plan_page(made: ReconcilePlan, cursor: str | None, limit: int) -> dict[str, Any]:
    """The plan as the CLI prints it, its steps only for the ``limit`` records after the
    cursor's key (a record's correction and adoption stay on one page)."""
    after = _after(cursor)
    steps: Sequence[Any] = (*made.corrections, *made.adoptions, *made.skipped)
    keys = sorted({step.key for step in steps if after is None or step.key > after})
    shown = set(keys[:limit])
    whole = replace(made, corrections=(), adoptions=(), skipped=()).to_json()

    def page(items: Sequence[Any]) -> list[Any]:
        return [item.to_json() for item in items if item.key in shown]

    return {
        **whole,
        "corrections": page(made.corrections),
        "adoptions": page(made.adoptions),
        "skipped": page(made.skipped),
        "steps": {
            "corrections": len(made.corrections),
            "adoptions": len(made.adoptions),
            "skipped": len(made.skipped),
        },
        "next_cursor": _cursor(keys[limit - 1]) if len(keys) > limit else None,
    }


def _cursor(key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"after": key})).decode().rstrip("=")


def _after(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        after = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["after"]
        if not isinstance(after, str):
            raise TypeError
    except (binascii.Error, ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        raise InvalidChange(
            "cursor is not one this API gave out; start again without it", field="cursor"
        ) from None
    return after
