"""The HTTP API's composition root: `create_app` opens the ledger once per worker, installs
the error answers and the routes, and serves the OpenAPI document (to token holders).

Several workers (``ledger serve --workers N``, or several machines) against one PostgreSQL
ledger is the way to scale out: tokens and Idempotency-Keys live in the ledger itself, so
every worker sees what any other recorded.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ledger.api import (
    actions,
    apply,
    errors,
    evidence,
    health,
    lanes,
    reads,
    reconcile,
    replays,
    rollbacks,
)
from ledger.api.auth import caller
from ledger.api.models import ApplyRequest, ChangeBatch, ChangeLine, Problem
from ledger.api.rollback_models import REQUEST_BODIES as ROLLBACK_BODIES
from ledger.api.settings import CONFIG_KEY, DEFAULT_MAX_BODY, MAX_BODY_KEY, PLANS_DIR_KEY
from ledger.application import Ledger
from ledger.bootstrap import DB_KEY, open_ledger, resolve_db
from ledger.rollback_requests import plans_directory

# Every route may answer these; the OpenAPI document says so (and schemathesis checks it).
PROBLEMS: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": Problem, "description": description}
    for status, description in (
        (400, "A request the ledger refused"),
        (401, "No live token"),
        (403, "Outside the token's scopes, workflows or systems"),
        (404, "Not found"),
        (409, "Stale, concurrent or in the wrong state"),
        (413, "Body over the size limit"),
        (422, "Invalid input: field names its path"),
        (423, "The workflow's lane is paused"),
        (500, "Internal error (correlation_id)"),
        (502, "The target system failed"),
        (503, "Unavailable for now: retry (Retry-After)"),
    )
}


def create_app(
    db: str | None,
    config: str | None = None,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    ledger: Ledger | None = None,
    plans_dir: str | Path | None = None,
) -> FastAPI:
    """The API over the ledger at ``db`` (or an open ``ledger``), writing to the systems of
    ``config`` (default ./ledger.toml); bodies over ``max_body`` bytes are refused (413);
    rollback plans are saved in ``plans_dir`` (default rollback-plans/ beside the config)."""
    opened = ledger if ledger is not None else open_ledger(db, create=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if ledger is None:
            opened.close()

    app = FastAPI(
        title="changeledger",
        version=version("changeledger"),
        description="Record, apply and inspect every action an automation takes (docs/http.md).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, to token holders only
        lifespan=lifespan,
    )
    app.state.ledger = opened
    app.state.location = resolve_db(db)
    app.state.config = config
    app.state.max_body = max_body
    app.state.plans_dir = plans_directory(config, plans_dir)
    errors.install(app)
    app.include_router(health.router, responses={s: PROBLEMS[s] for s in (500, 503)})
    for group in (reads, actions, apply, rollbacks, replays, reconcile, lanes, evidence):
        app.include_router(group.router, responses=PROBLEMS)

    @app.get("/v1/openapi.json", include_in_schema=False, dependencies=[Depends(caller)])
    def openapi() -> JSONResponse:
        return JSONResponse(openapi_document(app))

    return app


BODIES: Final[tuple[type[BaseModel], ...]] = (ChangeLine, ChangeBatch, ApplyRequest)


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with the request bodies the routes read themselves."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        _, bodies = models_json_schema(
            [(model, "validation") for model in (*BODIES, *ROLLBACK_BODIES)],
            ref_template="#/components/schemas/{model}",
        )
        document.setdefault("components", {}).setdefault("schemas", {}).update(bodies["$defs"])
        app.openapi_schema = document
    return app.openapi_schema


def from_environment() -> FastAPI:
    """The app of one `ledger serve` worker: settings from the environment it was given."""
    return create_app(
        os.environ.get(DB_KEY),
        os.environ.get(CONFIG_KEY),
        max_body=int(os.environ.get(MAX_BODY_KEY, DEFAULT_MAX_BODY)),
        plans_dir=os.environ.get(PLANS_DIR_KEY),
    )
