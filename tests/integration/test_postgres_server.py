"""The PostgreSQL test fixtures themselves work (fresh databases, isolation, db_url)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from postgres_server import PostgresServer, PostgresUnavailable, find_binaries


@pytest.mark.postgres
def test_fresh_database_accepts_ddl_and_dml(postgres_url: str) -> None:
    """A fresh database is empty and usable for CREATE TABLE / INSERT / SELECT."""
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO items (name) VALUES (%s), (%s)", ("a", "ß€"))
        assert conn.execute("SELECT name FROM items ORDER BY id").fetchall() == [("a",), ("ß€",)]


@pytest.mark.postgres
def test_databases_are_distinct_and_dropped(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    """Two fresh databases are separate; drop_database really removes one."""
    other_url = postgres_server.create_database()
    try:
        assert other_url != postgres_url
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE only_here (x int)")
        with psycopg.connect(other_url, autocommit=True) as conn:
            assert conn.execute("SELECT to_regclass('only_here')").fetchone() == (None,)
    finally:
        postgres_server.drop_database(other_url)
    other_name = other_url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_server.admin_url, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (other_name,))
        assert found.fetchone() is None


def test_db_url(db_url: str, request: pytest.FixtureRequest) -> None:
    """db_url is a plain file path for sqlite (no server started) and a URL for postgres."""
    if request.node.callspec.id == "sqlite":
        assert "://" not in db_url
        assert Path(db_url).name == "ledger.db" and Path(db_url).parent.is_dir()
        assert "postgres_server" not in request.fixturenames
    else:
        assert db_url.startswith("postgresql://")
        with psycopg.connect(db_url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (
                db_url.rsplit("/", 1)[1],
            )


def test_missing_binaries_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bin dir without initdb/pg_ctl gives PostgresUnavailable with a readable reason."""
    monkeypatch.setenv("LEDGER_TEST_PG_BINDIR", "/nonexistent")
    with pytest.raises(PostgresUnavailable, match="does not contain initdb and pg_ctl"):
        find_binaries()
