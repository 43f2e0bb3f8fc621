"""`ledger serve`: the HTTP API (`ledger.api`) on uvicorn, on loopback unless told otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ledger.api.settings import CONFIG_KEY, DEFAULT_MAX_BODY, MAX_BODY_KEY, PLANS_DIR_KEY
from ledger.bootstrap import DB_KEY, open_ledger, resolve_db
from ledger.cli.base import common, config_option, errors_as_messages, main


@main.command("serve")
@common
@errors_as_messages
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Worker processes; several share one ledger (PostgreSQL, to scale out).",
)
@click.option(
    "--max-body",
    default=DEFAULT_MAX_BODY,
    show_default=True,
    type=click.IntRange(1),
    help="Largest request body in bytes (413 above it).",
)
@click.option(
    "--plans-dir",
    type=click.Path(file_okay=False),
    help="Where rollback plans are saved  [default: rollback-plans/ beside the config file].",
)
def serve(
    db: str | None,
    as_json: bool,
    config: str | None,
    host: str,
    port: int,
    workers: int,
    max_body: int,
    plans_dir: str | None,
) -> None:
    """Serve the HTTP API (docs/http.md) until interrupted; every route but /v1/health needs a
    token from `ledger token create`."""
    location = resolve_db(db)
    open_ledger(location, create=False).close()  # missing or unreachable: one line, here
    # Each worker builds its app from the environment (`ledger.api.app.from_environment`).
    os.environ[DB_KEY] = location
    if config is not None:
        os.environ[CONFIG_KEY] = config
    os.environ[MAX_BODY_KEY] = str(max_body)
    if plans_dir is not None:
        os.environ[PLANS_DIR_KEY] = str(Path(plans_dir).absolute())
    import uvicorn  # only when serving: every other command starts without the ASGI server

    uvicorn.run(
        "ledger.api.app:from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )
