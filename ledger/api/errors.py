"""Every error the API answers, in one place: the `ledger.errors` tree mapped to a status and
a JSON problem body ``{"error": kind, "message": ..., "field": ...}`` a no-code flow can
branch on.

    status  kind             raised by
    422     invalid          InvalidChange, InvalidValue, FingerprintReused; a body or query
                             that fails validation (field = its path); an Idempotency-Key
                             sent again with another body (key = the key)
    409     stale            StaleWrite, BeforeMismatch (expected and actual values)
    409     concurrency      ConcurrencyConflict; a request with the same key still running
    409     unproved         ReenableRefused: unmet = each condition of the lane's
                             re-enable rule not met (bring the proof, or override)
    409     conflict         BatchClosed, CanaryLimit, CheckpointExists, LaneNotPaused,
                             ApprovalRequired (the plan is not approved
                             yet: the state of the plan, not the caller, is in the way; the
                             same call succeeds once a second person approved it)
    403     forbidden        outside the token's scopes, workflows or systems; ApprovalRefused
                             (this caller may not approve this plan, whatever its state)
    401     unauthorized     no token, or not a live one (WWW-Authenticate: Bearer)
    404     not_found        NotFound, UnknownCheckpoint; an unknown route
    413     too_large        a body over the size limit (counted while reading)
    423     paused           LanePaused: who paused the lane, when, why, the trigger
    502     target_failed    AdapterError, TargetRejected (the system refused or failed)
    503     unavailable      StoreUnavailable, TransientError, RunInterrupted; the ledger's
                             or a target's database unreachable, locked (Retry-After)
    500     internal         anything else, logged with a correlation id; never a traceback

Answers of the kinds a retry may change (concurrency, paused, 5xx) are not kept for replay
under an Idempotency-Key: the same request sent again executes again.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from typing import Any, Final

import orjson
from eventsourcing.persistence import PersistenceError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger import errors as e
from ledger.api.models import Answer
from ledger.bootstrap import store_failure
from ledger.encoding import encode_value
from ledger.lane_control import LaneStore, lane

log = logging.getLogger("ledger.api")

STATUSES: Final[dict[type[e.LedgerError], tuple[int, str]]] = {
    e.LedgerError: (400, "error"),
    e.InvalidChange: (422, "invalid"),
    e.BeforeMismatch: (409, "stale"),
    e.ConcurrencyConflict: (409, "concurrency"),
    e.BatchClosed: (409, "conflict"),
    e.CanaryLimit: (409, "conflict"),
    e.CheckpointExists: (409, "conflict"),
    e.LaneNotPaused: (409, "conflict"),
    e.ReenableRefused: (409, "unproved"),
    e.ApprovalRequired: (409, "conflict"),
    e.ApprovalRefused: (403, "forbidden"),
    e.NotFound: (404, "not_found"),
    e.LanePaused: (423, "paused"),
    e.AdapterError: (502, "target_failed"),
    e.StaleWrite: (409, "stale"),
    e.TransientError: (503, "unavailable"),
    e.StoreUnavailable: (503, "unavailable"),
    e.RunInterrupted: (503, "unavailable"),
    e.ConfigurationError: (500, "configuration"),
    e.TamperDetected: (500, "tamper_detected"),
}
RETRYABLE_KINDS: Final = frozenset({"concurrency", "paused"})
RETRY_AFTER_SECONDS: Final = "5"


class Problem(Exception):
    """An error answer raised inside the API (auth, limits, idempotency, bad paths)."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **details: Any,
    ):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.details = details

    def answer(self) -> Answer:
        body = {"error": self.kind, "message": self.message, "field": self.field, **self.details}
        headers = dict(self.headers)
        if self.status == 503:
            headers.setdefault("Retry-After", RETRY_AFTER_SECONDS)
        return Answer(self.status, orjson.dumps(body), headers)


def retryable(answer: Answer) -> bool:
    """An answer a later retry of the same request may change: not kept for replay. A 423
    from a run the lane stopped part-way (its body says ``stopped``) is kept: that run
    happened, and what it landed is the answer, where a retry would only meet the pause."""
    if answer.status >= 500 or answer.status == 429:
        return True
    if answer.status == 423:
        return "stopped" not in orjson.loads(answer.body)
    return answer.status == 409 and orjson.loads(answer.body).get("error") in RETRYABLE_KINDS


def problem_of(error: e.LedgerError, ledger: LaneStore, where: str | None = None) -> Problem:
    """The answer to a library error; ``where`` prefixes the field's path (``changes[2]``)."""
    status, kind = next(STATUSES[cls] for cls in type(error).__mro__ if cls in STATUSES)
    field = getattr(error, "field", None)
    message = str(error)
    details: dict[str, Any] = {}
    if isinstance(error, e.InvalidChange) and error.line is not None and where is not None:
        item = f"{where}[{error.line - 1}]"  # the n-th line of a change file is changes[n-1]
        field = f"{item}.{field}" if field else item
        message = f"{item}: {error.reason}"
    if isinstance(error, e.StaleWrite):
        details = {
            "record": error.record,
            "expected": encode_value(error.expected),
            "actual": encode_value(error.actual),
        }
    elif isinstance(error, e.BeforeMismatch):
        details = {
            "record": error.entity,
            "expected": encode_value(error.given),
            "actual": encode_value(error.expected),
        }
    elif isinstance(error, e.LanePaused):
        details = _pause(ledger, error.workflow)
    elif isinstance(error, e.ReenableRefused):
        details = {"unmet": list(error.unmet), "expected": list(error.unmet)}
    return Problem(status, kind, message, field=field, **details)


def _pause(ledger: LaneStore, workflow: str) -> dict[str, Any]:
    """Who paused the lane, when, why and which trigger, read from the lane itself (the
    error carries only its message and workflow)."""
    pause = lane(ledger, workflow).pause
    details: dict[str, Any] = {"workflow": workflow}
    if pause is not None:
        details.update(
            paused_by=pause.actor,
            paused_at=pause.at.isoformat(),
            reason=pause.reason,
            trigger=pause.trigger,
        )
    return details


def respond(answer: Answer, *, replayed: bool = False) -> Response:
    headers = {**answer.headers, **({"Idempotent-Replayed": "true"} if replayed else {})}
    return Response(answer.body, answer.status, headers, media_type="application/json")


def install(app: FastAPI) -> None:
    """Every error becomes a problem body; nothing unexpected leaks a traceback."""

    @app.exception_handler(Problem)
    async def problem(request: Request, error: Problem) -> Response:
        return respond(error.answer())

    @app.exception_handler(e.LedgerError)
    def ledger_error(request: Request, error: e.LedgerError) -> Response:
        return respond(problem_of(error, request.app.state.ledger).answer())

    @app.exception_handler(PersistenceError)
    @app.exception_handler(sqlite3.Error)
    async def store_down(request: Request, error: Exception) -> Response:
        """The ledger's own database is unreachable, locked or read-only: retry later."""
        message = store_failure(request.app.state.location, error)
        return respond(Problem(503, "unavailable", message).answer())

    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.InterfaceError)
    async def target_down(request: Request, error: Exception) -> Response:
        """A target database failed mid-run: what landed is recorded; the same request again
        settles any write left unconfirmed first."""
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        return respond(
            Problem(
                503,
                "unavailable",
                f"a target database failed: {reason}; send the same request again when it is "
                "reachable (nothing is applied twice)",
            ).answer()
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        return respond(
            Problem(
                422, "invalid", f"{path}: {first['msg']}", field=path, expected=first["msg"]
            ).answer()
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "error")
        return respond(
            Problem(
                error.status_code, kind, str(error.detail), headers=dict(error.headers or {})
            ).answer()
        )

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception) -> Response:
        correlation = uuid.uuid4().hex
        log.error(
            "internal error %s on %s %s",
            correlation,
            request.method,
            request.url.path,
            exc_info=error,
        )
        return respond(internal_error(correlation))


def internal_error(correlation: str) -> Answer:
    return Problem(
        500,
        "internal",
        f"internal error; nothing more is known to the caller: quote {correlation} to the "
        "operator, who finds it in the server's log",
        correlation_id=correlation,
    ).answer()
