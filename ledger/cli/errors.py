"""Every library error, and every failure a user can meet and fix (a database unreachable,
locked or read-only, command-line text that is not UTF-8), becomes a one-line message and exit
code 1 here, and only here; anything else is a bug and keeps its traceback. Click's usage
mistakes exit 1 too, by the one table of `ledger.cli.exit`.
"""

from __future__ import annotations

import functools
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from eventsourcing.persistence import PersistenceError

from ledger.bootstrap import resolve_db, store_failure
from ledger.cli.exit import Exit
from ledger.errors import InvalidChange, LanePaused, LedgerError

F = TypeVar("F", bound=Callable[..., Any])


def errors_as_messages(command: F) -> F:
    """Run a command with its arguments checked, its failures translated into one line."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            _refuse_undecodable(kwargs)
            return command(*args, **kwargs)
        except LanePaused as error:  # writes refused by a paused lane: exit 3 by the table
            raise _Refused(str(error)) from None
        except LedgerError as error:
            raise click.ClickException(message(error, kwargs.get("db"))) from None
        except _database_failures() as error:
            raise click.ClickException(message(error, kwargs.get("db"))) from None

    return wrapper  # type: ignore[return-value]


def message(error: Exception, db: str | None) -> str:
    """The one line a user reads for an error the command expected."""
    if isinstance(error, LedgerError):
        return str(error)
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None or not isinstance(error, sa_exc.DBAPIError):
        return store_failure(resolve_db(db), error)
    reason = str(error.orig or error).strip().splitlines()[0]
    return (
        f"a target database failed: {reason}; nothing more was written: run the command again "
        "when the database is free and reachable (a rerun settles any write left unconfirmed "
        "first; see `ledger recover`)"
    )


def _database_failures() -> tuple[type[Exception], ...]:
    """The database failures a user can fix (unreachable, locked, read-only); anything else is
    a bug and keeps its traceback. The ledger's store fails through the eventsourcing library
    (or raw sqlite3/psycopg while connecting), targets through SQLAlchemy: each is looked
    for only if it was loaded."""
    failures: list[type[Exception]] = [PersistenceError, sqlite3.Error]
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        failures.append(psycopg.Error)
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None:
        failures += [sa_exc.OperationalError, sa_exc.InterfaceError]
    return tuple(failures)


def _refuse_undecodable(arguments: dict[str, Any]) -> None:
    """Command-line text that is not UTF-8 (Python keeps such bytes as lone surrogates, which
    nothing can store) is refused naming the option."""
    for name, value in arguments.items():
        for text in value if isinstance(value, tuple) else (value,):
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    option = name.rstrip("_").replace("_", "-")
                    raise InvalidChange(
                        f"--{option} {text!r} is not UTF-8 text", field=option
                    ) from None


class _Refused(click.ClickException):
    exit_code = Exit.REFUSED


class _UsageError(click.UsageError):
    """A usage mistake exits 1 (click's default is 2): 2 means done, with items left for review."""

    exit_code = Exit.ERROR


@contextmanager
def usage_errors_exit_1() -> Iterator[None]:
    """Click's usage errors raised inside, with exit code 1 (the one table's error)."""
    try:
        yield
    except click.UsageError as error:
        if isinstance(error, _UsageError):
            raise
        raise _UsageError(error.format_message(), error.ctx) from None
