"""The floor of bench row 12: the ledger's own app (`create_app`, built from the environment
exactly as each `ledger serve` worker builds it) plus one bench-only route, ``POST
/bench/floor``, served by the same uvicorn with the same workers and log level over the same
PostgreSQL ledger. The route does what any endpoint storing the action must: read the body
(same size limit), parse its JSON, and insert the rows the ledger wrote for that request
(its event rows and its action-index row, byte for byte, exported after the ledger's run)
in one transaction under the events table's EXCLUSIVE lock, as the library's recorder
inserts; then answer with the ledger's answer bytes. No token check, no idempotency claim,
no before-value check, no Merkle leaves: none of the ledger's logic. A repeated request
stores nothing (``ON CONFLICT DO NOTHING``): the cheapest way to store a row once.

    python -m bench.http_floor --workers 4 --host 127.0.0.1 --port 8001
"""

from __future__ import annotations

import argparse
import os
import pickle
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI
from fastapi.responses import Response

from ledger.api.app import from_environment
from ledger.api.bodies import read_body

ROWS_KEY = "BENCH_FLOOR_ROWS"  # the pickle of `bench.http_tasks.export_answers`
PATH = "/bench/floor"
EVENT_COLUMNS = "notification_id, originator_id, originator_version, topic, state"
INDEX_COLUMNS = (
    "position, entity_id, version, system, collection, key, operation, batch, workflow, "
    "recorded_at, effective_at, fingerprint"
)


def floor_app() -> FastAPI:
    """The ledger's app with the bare route added (a uvicorn factory)."""
    app = from_environment()
    with open(os.environ[ROWS_KEY], "rb") as file:
        stored: dict[str, Any] = pickle.load(file)
    rows: dict[str, tuple[list[tuple[Any, ...]], tuple[Any, ...], int, bytes]] = stored["rows"]
    datastore = app.state.ledger.recorder.datastore
    events = f'"{datastore.schema}"."{stored["table"]}"'
    lock = f"LOCK TABLE {events} IN EXCLUSIVE MODE"
    insert_event = (
        f"INSERT INTO {events} ({EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
    )
    insert_index = (
        f'INSERT INTO "{datastore.schema}".ledger_actions ({INDEX_COLUMNS}) '
        f"VALUES ({', '.join(['%s'] * 12)}) ON CONFLICT DO NOTHING"
    )

    def store(body: Annotated[bytes, Depends(read_body)]) -> Response:
        event_rows, index_row, status, answer = rows[orjson.loads(body)["entity"]]
        with datastore.transaction(commit=True) as cursor:
            cursor.execute(lock)
            cursor.executemany(insert_event, event_rows)
            cursor.execute(insert_index, index_row)
        return Response(answer, status_code=status, media_type="application/json")

    app.add_api_route(PATH, store, methods=["POST"], include_in_schema=False)
    return app


def main() -> None:
    """Serve the floor as `ledger serve` serves the ledger (the same `uvicorn.run` call)."""
    parser = argparse.ArgumentParser(prog="python -m bench.http_floor")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(
        "bench.http_floor:floor_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
    )


if __name__ == "__main__":
    main()
