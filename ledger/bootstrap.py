"""The composition root: turns a database setting into a ready `Ledger`, validated in one place.

``--db`` / ``LEDGER_DB`` is either a SQLite file path (the default, ``./ledger.db``) or a
PostgreSQL URL (``postgresql://user:password@host:5432/dbname?schema=ledger``).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ledger.application import Ledger
from ledger.errors import ConfigurationError

DB_KEY = "LEDGER_DB"
DEFAULT_DB = "ledger.db"
LOCK_TIMEOUT_SECONDS = "30"


def resolve_db(db: str | None = None) -> str:
    """The database to use: the argument, else ``LEDGER_DB``, else ``./ledger.db``."""
    value = db if db is not None else os.environ.get(DB_KEY, DEFAULT_DB)
    if not value.strip():
        raise ConfigurationError(f"{DB_KEY} / --db is empty; give a SQLite path or a URL")
    return value


def store_env(db: str) -> dict[str, str]:
    """The eventsourcing environment for a database setting; a bad one names the setting."""
    if db.startswith(("postgresql://", "postgres://")):
        return _postgres_env(db)
    if "://" in db:
        raise ConfigurationError(
            f"{DB_KEY} / --db {db!r}: only SQLite paths and postgresql:// URLs are supported"
        )
    return {
        "PERSISTENCE_MODULE": "ledger.sqlite_store:Factory",
        "SQLITE_DBNAME": db,
        "SQLITE_LOCK_TIMEOUT": LOCK_TIMEOUT_SECONDS,
    }


def _postgres_env(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise ConfigurationError(f"{DB_KEY} / --db {url!r} names no database (…/dbname)")
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - {"schema"})
    if unknown:
        raise ConfigurationError(f"{DB_KEY} / --db: unknown URL option {unknown[0]!r}")
    return {
        "PERSISTENCE_MODULE": "ledger.postgres_store:Factory",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname or "localhost",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_SCHEMA": query.get("schema", ["public"])[0],
        "POSTGRES_LOCK_TIMEOUT": LOCK_TIMEOUT_SECONDS,
        "POSTGRES_POOL_SIZE": "2",
    }


def open_ledger(db: str | None = None, *, create: bool = True) -> Ledger:
    """Open (and with ``create``, initialise) the ledger at a database setting."""
    db = resolve_db(db)
    env = store_env(db)
    if "SQLITE_DBNAME" in env:
        path = Path(db)
        if not create and not path.exists():
            raise ConfigurationError(f"no ledger at {db!r}; run `ledger init` or set {DB_KEY}")
        if not path.parent.is_dir():
            raise ConfigurationError(f"{DB_KEY} / --db {db!r}: directory {path.parent} missing")
    return Ledger(env=env)
