"""``GET /v1/health``: the one route open without a token, for load balancers and uptime
checks; it says the server answers and reaches its ledger, and nothing about the ledger."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import APIRouter, Request

from ledger.api.models import Health

router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/health", response_model=Health)
def health(request: Request) -> Health:
    """The server is up and its ledger answers."""
    request.app.state.ledger.recorder.max_notification_id()
    return Health(status="ok", version=version("changeledger"))
