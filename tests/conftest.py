"""Shared pytest fixtures: real PostgreSQL databases (see postgres_server.py) and db URLs.

The suite in three folders: `unit/` (pure functions and data, no database, no process),
`integration/` (the library on real SQLite files, a real PostgreSQL server, real HTTP on
loopback and real files), `e2e/` (the `ledger` command as a user runs it, the demo, the
README, the benchmark harness). The servers, tables and crash hooks they share live here
(tests/*.py, tests/fixtures/), importable from every folder (`pythonpath` in pyproject.toml).

Without PostgreSQL binaries the postgres tests are skipped locally, but fail when CI=true.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_server import PostgresServer, PostgresUnavailable, start_server

from ledger import Ledger, open_ledger

pytest_plugins = ["fixtures.servers", "fixtures.api"]  # HTTP servers; the served API


def _running_in_ci() -> bool:
    """True when env CI is 'true' (any case): PostgreSQL tests must then never be skipped."""
    return os.environ.get("CI", "").strip().lower() == "true"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server per session, started on first use and stopped at session end."""
    unavailable = None
    try:
        server = start_server()
    except PostgresUnavailable as exc:
        unavailable = exc.reason  # skip/fail outside the except block: no chained traceback
    if unavailable is not None:
        if _running_in_ci():
            pytest.fail(f"PostgreSQL is required when CI=true: {unavailable}", pytrace=False)
        pytest.skip(f"PostgreSQL unavailable: {unavailable}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped after the test; its signing key's
    path (created with the ledger) in ``LEDGER_SIGNING_KEY``, which subprocesses inherit."""
    monkeypatch.setenv("LEDGER_SIGNING_KEY", str(tmp_path / "postgres-ledger.key"))
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(url)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test runs twice: a SQLite file path, and a fresh PostgreSQL database URL."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    return str(request.getfixturevalue("postgres_url"))  # lazy: sqlite never starts a server


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    """A ledger on the parametrized store (SQLite file, PostgreSQL database)."""
    app = open_ledger(db_url)
    yield app
    app.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLAlchemy URL for a target database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'crm.db'}"
    url = str(request.getfixturevalue("postgres_url"))
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A folder with a SQLite CRM path, an initialised ledger and a ledger.toml naming the CRM
    as system `crm` (collection `contacts`), and the environment for `ledger` commands."""
    crm = tmp_path / "crm.db"
    config = tmp_path / "ledger.toml"
    config.write_text(
        f'[systems.crm]\ntype = "sql"\nurl = "sqlite:///{crm}"\n'
        'collections.contacts = { table = "contacts", key = ["id"] }\n'
    )
    env = {**os.environ, "LEDGER_DB": str(tmp_path / "ledger.db"), "LEDGER_CONFIG": str(config)}
    subprocess.run(
        [sys.executable, "-m", "ledger", "init"], env=env, check=True, capture_output=True
    )
    return tmp_path, crm, env
