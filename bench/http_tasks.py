"""Workload 12: the HTTP API under load (issue 19). ``ledger serve --workers 4`` over a
PostgreSQL ledger answers N record requests (``POST /v1/actions``, one change each, about a
tenth repeating an earlier Idempotency-Key, some racing) from 16 concurrent clients on
loopback; the floor (`bench.http_floor`) answers the same requests on the same app, uvicorn,
workers and database by storing the same rows with no ledger logic. The plan, the clients,
the server process and the exactly-once checks are the test suite's (``tests/api_load.py``,
also run by ``tests/integration/test_api_load.py``): a lost or doubled action fails the run.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
from types import ModuleType
from typing import Any
from uuid import UUID

import orjson

from bench import ROOT
from bench.http_floor import PATH as FLOOR_PATH
from bench.http_floor import ROWS_KEY
from bench.report import Row
from ledger import create_token, open_ledger
from ledger.bootstrap import DB_KEY
from ledger.domain import batch_id

CLIENTS = 16
WORKERS = 4
TOKEN = "load-bot"


def _harness() -> Any:
    """``tests/api_load.py``, loaded as `bench.pg` loads the test PostgreSQL server."""
    name = "api_load"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "api_load.py")
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# Tasks (each in a fresh `python -m bench.child` process) ---------------------------------


def http_setup(db: str) -> dict[str, Any]:
    """A new PostgreSQL ledger and the record token the clients use (not timed)."""
    ledger = open_ledger(db, create=True)
    secret = create_token(ledger, TOKEN, ["record"], actor="bench").secret
    ledger.close()
    return {"secret": secret}


def http_ledger(db: str, n: int, secret: str, export: str) -> dict[str, Any]:
    """`ledger serve --workers 4` answers the plan; then every check, and the rows each
    distinct request stored exported for the floor (untimed)."""
    load = _harness()
    requests = load.plan(n, racing=CLIENTS)
    headers = {"Authorization": f"Bearer {secret}"}
    command = [sys.executable, "-m", "ledger", "serve", "--db", db, "--workers", str(WORKERS)]
    before = _stats(db)
    with load.served(command, dict(os.environ), WORKERS) as server:
        answers, wall = load.drive(server.url, load.RECORD_PATH, headers, requests, CLIENTS)
        peak = server.workers_peak_mib()
        checked = load.check_answers(requests, answers)
        load.resend_refused(server.url, load.RECORD_PATH, headers, requests, checked)
    after = _stats(db)
    ledger = open_ledger(db, create=False)
    try:
        distinct = load.check_ledger(ledger, requests)
        table = ledger.index.events_table_name
    finally:
        ledger.close()
    if load.count_actions(db) != distinct:
        raise load.LoadFailure(f"{load.count_actions(db)} actions for {distinct} keys")
    rows = export_answers(db, table, checked["first"], requests, export)
    return {
        **load.figures(answers, wall),
        "distinct": distinct,
        "replayed": checked["replayed"],
        "refused": len(checked["refused"]),
        "server_mib": peak,
        "commits": after[0] - before[0],
        "inserted": after[1] - before[1],
        **rows,
    }


def http_floor(db: str, n: int, secret: str, rows: str) -> dict[str, Any]:
    """The floor's server answers the same plan; its database must then hold the same rows."""
    load = _harness()
    requests = load.plan(n, racing=CLIENTS)
    headers = {"Authorization": f"Bearer {secret}"}
    with open(rows, "rb") as file:
        exported = pickle.load(file)
    env = {**os.environ, DB_KEY: db, ROWS_KEY: rows}
    command = [sys.executable, "-m", "bench.http_floor", "--workers", str(WORKERS)]
    before = _stats(db)
    actions = load.count_actions(db)
    with load.served(command, env, WORKERS) as server:
        answers, wall = load.drive(server.url, FLOOR_PATH, headers, requests, CLIENTS)
        peak = server.workers_peak_mib()
    after = _stats(db)
    for answer in answers:
        _, _, status, body = exported["rows"][load.entity_of(requests[answer.index])]
        if (answer.status, answer.body) != (status, body):
            raise load.LoadFailure(f"floor: {answer.status} {answer.body[:300]!r}")
    stored = load.count_actions(db) - actions
    if stored != len(exported["rows"]):
        raise load.LoadFailure(f"floor: {stored} index rows for {len(exported['rows'])} keys")
    return {
        **load.figures(answers, wall),
        "server_mib": peak,
        "commits": after[0] - before[0],
        "inserted": after[1] - before[1],
    }


def export_answers(
    db: str, table: str, first: dict[str, Any], requests: list[Any], path: str
) -> dict[str, Any]:
    """Per record: the event rows (its batch's and its own) and the index row the ledger
    stored for the request, and its answer; pickled for the floor. Untimed."""
    import psycopg

    load = _harness()
    answers = {load.entity_of(planned): first[planned.key] for planned in requests}
    receipts = {entity: orjson.loads(answer.body) for entity, answer in answers.items()}
    entity_ids = [UUID(r["entity_id"]) for r in receipts.values()]
    originators = entity_ids + [batch_id(r["batch"]) for r in receipts.values()]
    with psycopg.connect(db) as connection:
        events = connection.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            f"FROM {table} WHERE originator_id = ANY(%s) ORDER BY notification_id",
            (originators,),
        ).fetchall()
        index = connection.execute(
            "SELECT position, entity_id, version, system, collection, key, operation, batch, "
            "workflow, recorded_at, effective_at, fingerprint FROM ledger_actions "
            "WHERE entity_id = ANY(%s)",
            (entity_ids,),
        ).fetchall()
    by_originator: dict[UUID, list[tuple[Any, ...]]] = {}
    for event in events:
        by_originator.setdefault(event[1], []).append(tuple(event))
    by_entity = {row[1]: tuple(row) for row in index}
    rows = {}
    for entity, receipt in receipts.items():
        own = UUID(receipt["entity_id"])
        stored = by_originator.get(batch_id(receipt["batch"]), []) + by_originator.get(own, [])
        rows[entity] = (stored, by_entity[own], answers[entity].status, answers[entity].body)
    with open(path, "wb") as file:
        pickle.dump({"table": table, "rows": rows}, file)
    return {
        "events": len(events),
        "index_rows": len(index),
        "state_bytes": sum(len(event[4]) for event in events),
    }


def _stats(db: str) -> tuple[int, int]:
    """The database's committed transactions and inserted rows so far (PostgreSQL's own
    counters: they include the checks' few statements, and lag a backend until it exits)."""
    import psycopg

    name = db.rsplit("/", 1)[1]
    with psycopg.connect(db, autocommit=True) as connection:
        row = connection.execute(
            "SELECT xact_commit, tup_inserted FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


# The row -------------------------------------------------------------------------------


def row_12(suite: Any, postgres: bool) -> list[Row]:
    n = suite.sizes.http
    row = Row(
        "12",
        f"{n:,} `POST /v1/actions` (record one change, before-values given) from {CLIENTS} "
        f"concurrent clients on loopback, ~10 % repeated Idempotency-Keys (some racing), "
        f"`ledger serve --workers {WORKERS}`, one PostgreSQL ledger",
        f"a bare route on the same app, uvicorn and {WORKERS} workers over the same database "
        "storing the same event + index rows per request (one transaction), no ledger logic",
        "exactly one action per distinct key (else the run fails); rate and latency reported",
        unit="requests/s",
    )
    if not postgres:
        row.status = "skipped (--no-postgres)"
        return [row]
    from bench.pg import Postgres
    from bench.suite import TaskTimeout

    suite.log("workload 12: starting a throwaway PostgreSQL server")
    try:
        server = Postgres()
    except Exception as error:
        reason = Postgres.unavailable_reason(error)
        if reason is None:
            raise
        row.status = f"skipped: PostgreSQL {reason}"
        return [row]
    try:
        seed = server.create()
        secret = suite.task("http_setup", db=seed)["secret"]
        rows = suite.path("http-rows.pickle")
        suite.log(f"workload 12: `ledger serve` answers {n:,} requests from {CLIENTS} clients")
        limit = max(300.0, n / 20)  # ~35 requests/s on a busy 2-core machine: hung below 20
        try:
            ledger = suite.task(
                "http_ledger", db=server.copy(seed), n=n, secret=secret, export=rows, timeout=limit
            )
            suite.log("workload 12: the floor answers the same requests")
            floor = suite.task(
                "http_floor", db=server.copy(seed), n=n, secret=secret, rows=rows, timeout=limit
            )
        except TaskTimeout as error:
            row.status, row.met = f"**timed out**: {error}", False
            row.notes.append(
                f"at ~30 requests/s on a busy 2-core machine {n:,} requests take ~{n / 30:.0f} s: "
                "give a larger `--timeout`, or a smaller `--sizes http=N`"
            )
            return [row]
    finally:
        server.stop()
    row.ledger_rate, row.reference_rate = ledger["rps"], floor["rps"]
    row.ratio = ledger["rps"] / floor["rps"]
    row.rss = (ledger["server_mib"], floor["server_mib"])
    row.extra = f"p50 {ledger['p50_ms']:.0f} ms, p99 {ledger['p99_ms']:.0f} ms"
    row.reference_extra = f"p50 {floor['p50_ms']:.0f} ms, p99 {floor['p99_ms']:.0f} ms"
    row.met = True  # every check passed: a breach raises and fails the run
    distinct = ledger["distinct"]
    row.notes += [
        f"{n:,} requests, {distinct:,} distinct keys: each executed once; "
        f"{ledger['replayed']:,} copies got the kept first answer byte for byte, "
        f"{ledger['refused']:,} arrived while their key's first copy was running (409, "
        "sent again after the run: each then got the first answer); no 5xx; the ledger then "
        f"held {distinct:,} actions, one per key, with the values sent",
        f"per distinct request the ledger stored {ledger['events'] / distinct:.1f} action "
        f"event rows ({ledger['state_bytes'] / ledger['events']:.0f} bytes of state each) and "
        "one index row, which the floor stored too; on top the ledger wrote the key's claim "
        "and answer events and a Merkle leaf per event: "
        f"{ledger['inserted'] / n:.1f} rows inserted and {ledger['commits'] / n:.1f} "
        f"transactions committed per request, against the floor's "
        f"{floor['inserted'] / n:.1f} and {floor['commits'] / n:.1f} "
        "(PostgreSQL's `pg_stat_database` counters)",
        f"peak RSS is the largest of the {WORKERS} server workers'; the {CLIENTS} clients "
        "(threads of one process, `http.client` keep-alive connections) share the machine's "
        "cores with the server and PostgreSQL",
    ]
    return [row]
