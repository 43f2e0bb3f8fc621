"""The composition root: turns a database setting into a ready `Ledger`, validated in one place.

``--db`` / ``LEDGER_DB`` is either a SQLite file path (the default, ``./ledger.db``) or a
PostgreSQL URL (``postgresql://user:password@host:5432/dbname?schema=ledger``).

Every save signs the tree head of the log (docs/integrity.md), with the private key in the
file ``--signing-key`` / ``LEDGER_SIGNING_KEY`` names; a SQLite ledger's default is the file
beside it, ``<db>.key`` (its public key ``<db>.pub``). A PostgreSQL ledger has no default. The
key pair is created when a ledger is created (`open_ledger` with ``create``, `ledger init`)
and has never been signed; never otherwise, so a lost key is an error, not a new identity.

The store is configured from that setting alone: `store_env` builds the eventsourcing
library's whole environment and `Ledger` does not read the process environment (where
``LEDGER_SQLITE_DBNAME`` would redirect the ledger to another file). A SQLite file is opened
only when it is new or empty, or already holds a ledger: never a CRM database given by
mistake. On PostgreSQL, where a ledger may share its application's database, every command
but ``ledger init`` refuses a schema that holds no ledger.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import cast
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from eventsourcing.persistence import PersistenceError

from ledger.application import Ledger
from ledger.errors import ConfigurationError, StoreUnavailable
from ledger.store import INDEX_TABLE
from ledger.store.keyfile import KEY_ENV, SIGNING_KEY, create_key_files
from ledger.store.tree import TreeRecorder

DB_KEY = "LEDGER_DB"
DEFAULT_DB = "ledger.db"
LOCK_TIMEOUT_SECONDS = "30"
CONNECT_TIMEOUT_SECONDS = "5"  # a PostgreSQL server that does not answer fails fast
URL_OPTIONS = ("schema", "connect_timeout")


def resolve_db(db: str | None = None) -> str:
    """The database to use: the argument, else ``LEDGER_DB``, else ``./ledger.db``."""
    value = db if db is not None else os.environ.get(DB_KEY, DEFAULT_DB)
    if not value.strip():
        raise ConfigurationError(f"{DB_KEY} / --db is empty; give a SQLite path or a URL")
    return value


def shown(db: str) -> str:
    """A database setting as it may be printed: a URL without its password."""
    parts = urlsplit(db)
    if "://" not in db or parts.password is None:
        return db
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def resolve_signing_key(db: str, signing_key: str | Path | None = None) -> Path | None:
    """The signing key's file: the argument, else ``LEDGER_SIGNING_KEY``, else ``<db>.key``
    beside a SQLite file (a PostgreSQL ledger has no default)."""
    value = signing_key if signing_key is not None else os.environ.get(KEY_ENV)
    if value is not None and str(value).strip():
        return Path(value)
    if value is not None:
        raise ConfigurationError(f"{KEY_ENV} / --signing-key is empty; give a key file's path")
    return None if is_postgres(db) else Path(db + ".key")


def store_env(db: str, signing_key: Path | None = None) -> dict[str, str]:
    """The eventsourcing environment for a database setting; a bad one names the setting."""
    key = {} if signing_key is None else {SIGNING_KEY: str(signing_key)}
    if is_postgres(db):
        return {**_postgres_env(db), **key}
    if "://" in db:
        raise ConfigurationError(
            f"{DB_KEY} / --db {shown(db)!r}: only SQLite paths and postgresql:// URLs are supported"
        )
    return {
        "PERSISTENCE_MODULE": "ledger.store.sqlite:Factory",
        "SQLITE_DBNAME": db,
        "SQLITE_LOCK_TIMEOUT": LOCK_TIMEOUT_SECONDS,
        **key,
    }


def _postgres_env(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise ConfigurationError(f"{DB_KEY} / --db {shown(url)!r} names no database (…/dbname)")
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - set(URL_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"{DB_KEY} / --db: unknown URL option {unknown[0]!r}; known: {', '.join(URL_OPTIONS)}"
        )
    timeout = query.get("connect_timeout", [CONNECT_TIMEOUT_SECONDS])[0]
    if not timeout.isdigit() or int(timeout) < 1:
        raise ConfigurationError(
            f"{DB_KEY} / --db: connect_timeout={timeout!r} must be a whole number of seconds"
        )
    return {
        "PERSISTENCE_MODULE": "ledger.store.postgres:Factory",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname or "localhost",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_SCHEMA": query.get("schema", ["public"])[0],
        "POSTGRES_LOCK_TIMEOUT": LOCK_TIMEOUT_SECONDS,
        "POSTGRES_CONNECT_TIMEOUT": timeout,
        "POSTGRES_POOL_SIZE": "2",
    }


def open_ledger(
    db: str | None = None, *, create: bool = True, signing_key: str | Path | None = None
) -> Ledger:
    """Open (and with ``create``, initialise) the ledger at a database setting.

    Opening upgrades a ledger stored before the Merkle tree existed (its leaves back-filled
    once, then signed when the key is at hand); with ``create``, a ledger never signed gets
    its key pair."""
    db = resolve_db(db)
    key = resolve_signing_key(db, signing_key)
    env = store_env(db, key)
    if "SQLITE_DBNAME" in env:
        _check_sqlite(db, create)
    else:
        _check_postgres(db, env, create)
    try:
        ledger = Ledger(env=env)
    except (PersistenceError, sqlite3.Error) as error:
        raise StoreUnavailable(store_failure(db, error)) from None
    try:
        _prepare_signing(ledger, key, create)
    except (PersistenceError, sqlite3.Error) as error:
        ledger.close()
        raise StoreUnavailable(store_failure(db, error)) from None
    except BaseException:
        ledger.close()
        raise
    return ledger


def _prepare_signing(ledger: Ledger, key: Path | None, create: bool) -> None:
    """With ``create``, a ledger never signed gets its key pair; a tree no head covers yet
    (leaves just back-filled by an upgrade) is signed as soon as the key is at hand."""
    tree = cast(TreeRecorder, ledger.recorder)
    with tree.tree_snapshot() as snapshot:
        head, size = snapshot.latest_head(), snapshot.tree_size()
    if key is None:
        return
    if create and head is None and not key.exists():
        create_key_files(key)
    if size and (head is None or head.size != size) and key.exists():
        tree.sign_head()


def store_failure(db: str, error: BaseException) -> str:
    """One line for a failure of the ledger's own database, with what to do about it."""
    text = str(error).strip()
    reason = text.splitlines()[0] if text else type(error).__name__
    lowered = reason.lower()
    if "locked" in lowered:
        advice = "another process is writing to it; try again when it has finished"
    elif "readonly" in lowered or "read-only" in lowered:
        advice = "the ledger cannot write to it: check the file's permissions and its folder's"
    elif "unable to open" in lowered:
        advice = "check that the file and its folder can be read and written"
    else:
        advice = "check that the database is up and reachable, then run the command again"
    return f"the ledger's database {shown(db)}: {reason}; {advice}"


def _check_sqlite(db: str, create: bool) -> None:
    path = Path(db)
    if not path.exists():
        if not create:
            raise ConfigurationError(f"no ledger at {db!r}; run `ledger init` or set {DB_KEY}")
        if not path.parent.is_dir():
            raise ConfigurationError(f"{DB_KEY} / --db {db!r}: directory {path.parent} missing")
        return
    if not path.is_file():
        raise ConfigurationError(f"{DB_KEY} / --db {db!r} is a folder, not a ledger file")
    if path.stat().st_size == 0:
        return
    try:
        uri = path.absolute().as_uri() + "?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as connection:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            tables = sorted(row[0] for row in rows)
    except sqlite3.OperationalError as error:
        raise StoreUnavailable(store_failure(db, error)) from None
    except sqlite3.DatabaseError:
        raise ConfigurationError(
            f"{DB_KEY} / --db {db!r} is not a SQLite database; give the ledger a file of its own"
        ) from None
    _refuse_other_tables(db, tables)


def _check_postgres(db: str, env: dict[str, str], create: bool) -> None:
    """Reach the server once, failing fast with its own reason (the library's pool would retry
    for its whole timeout and hide it), and see whether the schema holds a ledger."""
    import psycopg
    from psycopg import sql

    schema = env["POSTGRES_SCHEMA"]
    try:
        with psycopg.connect(
            host=env["POSTGRES_HOST"],
            port=env["POSTGRES_PORT"],
            dbname=env["POSTGRES_DBNAME"],
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"],
            connect_timeout=int(env["POSTGRES_CONNECT_TIMEOUT"]),
            autocommit=True,
        ) as connection:
            found = connection.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]
            ).fetchone()
            if found is None and create:
                connection.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )
            rows = connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                [schema],
            )
            tables = sorted(str(row[0]) for row in rows)
    except psycopg.Error as error:
        raise StoreUnavailable(store_failure(db, error)) from None
    # Other tables may share the schema: a ledger kept in its application's database.
    if not create and INDEX_TABLE not in tables:
        raise ConfigurationError(
            f"no ledger in {shown(db)!r} (schema {schema!r}); run `ledger init` or set {DB_KEY}"
        )


def _refuse_other_tables(db: str, tables: list[str]) -> None:
    """A ledger file is empty or holds the ledger's tables; anything else is someone's data."""
    if tables and INDEX_TABLE not in tables:
        listed = ", ".join(tables[:3]) + (", …" if len(tables) > 3 else "")
        raise ConfigurationError(
            f"{DB_KEY} / --db {db!r} holds tables that are not a ledger's ({listed}); "
            "give the ledger a file of its own"
        )
