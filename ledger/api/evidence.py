"""Evidence over HTTP, as `ledger receipt | verify | digest | metrics`: nothing is written.

Scopes. Every route needs ``read``. A receipt is limited to the token's systems, like the
record's history it explains. Verify, the digest and the metrics speak for the whole ledger
(every workflow's counts, every event's position), so they need a token not limited to
workflows or systems: a limited one gets 403.

A receipt's ``proof`` (and ``GET /v1/receipts/{action}/proof``, byte for byte the file
`ledger receipt --proof-out` writes) is checked offline with the ledger's public key alone
(`ledger.integrity.parse_receipt`, `verify_receipt`; docs/integrity.md).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from ledger.api.auth import check_systems, require
from ledger.api.bodies import json_object, read_body
from ledger.api.errors import Problem
from ledger.api.operations_models import (
    ActionReceiptModel,
    DigestModel,
    InclusionProof,
    VerifyModel,
    VerifyRequest,
    parsed,
)
from ledger.application import Ledger
from ledger.config import configured_contracts
from ledger.domain import Address
from ledger.errors import InvalidChange, TamperDetected
from ledger.evidence import digest as take_digest
from ledger.evidence import prove
from ledger.evidence import verify as verify_ledger
from ledger.integrity import receipt_json
from ledger.lane_config import configured_lanes
from ledger.metrics import metrics_text
from ledger.receipts import find_action, receipt
from ledger.signing import digest_json, parse_digest, parse_public_key
from ledger.tokens import TokenView

router = APIRouter(prefix="/v1", tags=["evidence"])
Reader = Annotated[TokenView, Depends(require("read"))]
ActionName = Annotated[
    str,
    Path(
        description="A fingerprint, a unique prefix of one, or SYSTEM/COLLECTION/KEY@VERSION",
        examples=["crm/contacts/42@3"],
    ),
]


def whole_ledger(token: TokenView, what: str) -> None:
    """403 unless the token is limited to no workflow and no system: ``what`` covers all."""
    if token.workflows or token.systems:
        limits = [*token.workflows, *token.systems]
        raise Problem(
            403,
            "forbidden",
            f"token {token.name!r} is limited to {', '.join(limits)}; {what} covers the whole "
            "ledger: use a token without workflow or system limits",
        )


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, media_type="application/json")


def _found(request: Request, token: TokenView, action: str) -> tuple[Ledger, Any]:
    ledger: Ledger = request.app.state.ledger
    view = find_action(ledger, action)
    check_systems(token, [Address.parse(view.entity).system], "path.action")
    return ledger, view


# The proof route is declared first: an action may be named by a path holding slashes.
@router.get(
    "/receipts/{action:path}/proof",
    response_model=None,
    responses={200: {"model": InclusionProof}},
)
def receipt_proof(request: Request, token: Reader, action: ActionName) -> Response:
    """The action's inclusion proof, the very file `ledger receipt --proof-out` writes."""
    ledger, view = _found(request, token, action)
    return Response(receipt_json(prove(ledger, view)), media_type="application/json")


@router.get(
    "/receipts/{action:path}",
    response_model=None,
    responses={200: {"model": ActionReceiptModel}},
)
def action_receipt(request: Request, token: Reader, action: ActionName) -> Response:
    """Everything needed to explain and repair one action (`ledger receipt --json`): what,
    why, the change, the checks, the correction path, and its inclusion proof."""
    ledger, view = _found(request, token, action)
    config = request.app.state.config
    found = receipt(
        ledger,
        view.fingerprint,
        lanes=configured_lanes(config),
        contracts=configured_contracts(config),
    )
    return _json(found.to_json())


@router.post(
    "/verify",
    response_model=None,
    responses={
        200: {"model": VerifyModel, "description": "The history is intact"},
        409: {"model": VerifyModel, "description": "Broken: first_break, error, message"},
    },
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": VerifyRequest.model_json_schema()}},
        }
    },
)
def verify(request: Request, token: Reader, body: Annotated[bytes, Depends(read_body)]) -> Response:
    """Recompute every event's hash and the tree, check every signed head (and a digest
    taken earlier); a broken history answers 409 naming the first place it breaks."""
    whole_ledger(token, "verify")
    args = parsed(VerifyRequest, json_object(body) if body.strip() else {})
    key = None
    if args.public_key is not None:
        key = parse_public_key(args.public_key.encode())
        if key is None:
            raise InvalidChange(
                "public_key is not an Ed25519 public key in PEM", field="public_key"
            )
    try:
        digest = None
        if args.digest is not None:
            digest = parse_digest(orjson.dumps(args.digest), name="digest")
        report = verify_ledger(request.app.state.ledger, digest=digest, public_key=key)
    except TamperDetected as error:
        return _json({"error": "tamper_detected", "message": str(error)}, 409)
    if report.first_break is None:
        return _json(report.to_json())
    return _json(
        {
            **report.to_json(),
            "error": "tamper_detected",
            "message": report.first_break.describe(),
        },
        409,
    )


@router.get("/digest", response_model=None, responses={200: {"model": DigestModel}})
def digest(request: Request, token: Reader) -> Response:
    """A signed head of the whole log with the public key, the file `ledger digest` writes:
    keep it away from the database, then `POST /v1/verify` with it proves the log only grew."""
    whole_ledger(token, "the digest")
    taken = take_digest(request.app.state.ledger)
    return Response(digest_json(taken.head, taken.public_key), media_type="application/json")


@router.get(
    "/metrics",
    response_model=None,
    responses={
        200: {
            "content": {CONTENT_TYPE_PLAIN_0_0_4: {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition (version 0.0.4), as `ledger metrics`",
        }
    },
)
def metrics(request: Request, token: Reader) -> Response:
    """The ledger's Prometheus metrics, computed from the ledger itself: actions, refusals,
    runs, trips, pauses, lane states, rollbacks, reconciliations and drift, deliveries."""
    whole_ledger(token, "metrics")
    lanes = configured_lanes(request.app.state.config)
    return Response(
        metrics_text(request.app.state.ledger, lanes), media_type=CONTENT_TYPE_PLAIN_0_0_4
    )
