"""What every `ledger` command shares: the command group, `--db`/`--json`/`--config`, one place
where library errors become one-line messages and exit codes, and table/JSON output."""

from __future__ import annotations

import functools
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson
from eventsourcing.persistence import PersistenceError

from ledger.application import Ledger
from ledger.bootstrap import DB_KEY, open_ledger, resolve_db, store_failure
from ledger.cli_exit import Exit
from ledger.encoding import encode_value
from ledger.errors import InvalidChange, LedgerError
from ledger.values import ABSENT

F = TypeVar("F", bound=Callable[..., Any])


def _common(command: F) -> F:
    """--db and --json, accepted by every command."""
    command = click.option(
        "--json", "as_json", is_flag=True, help="Print JSON for machines instead of a table."
    )(command)
    return click.option(
        "--db",
        envvar=DB_KEY,
        default=None,
        help=f"SQLite file or postgresql:// URL [env {DB_KEY}; default ./ledger.db].",
    )(command)


def _errors_as_messages(command: F) -> F:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            _refuse_undecodable(kwargs)
            return command(*args, **kwargs)
        except LedgerError as error:
            raise click.ClickException(str(error)) from None
        except _database_failures() as error:
            raise click.ClickException(_explained(error, kwargs.get("db"))) from None

    return wrapper  # type: ignore[return-value]


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


def _explained(error: Exception, db: str | None) -> str:
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None or not isinstance(error, sa_exc.DBAPIError):
        return store_failure(resolve_db(db), error)
    reason = str(error.orig or error).strip().splitlines()[0]
    return (
        f"a target database failed: {reason}; nothing more was written: run the command again "
        "when the database is free and reachable (a rerun settles any write left unconfirmed "
        "first; see `ledger recover`)"
    )


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


def _utf8(data: bytes, where: str, line: int | None = None) -> str:
    """Input text, decoded strictly: a byte that is not UTF-8 is refused naming where it is."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidChange(
            f"{where} is not UTF-8 text (byte {data[error.start]:#04x} at column "
            f"{error.start + 1}); save it as UTF-8",
            line=line,
        ) from None


def _read_lines(path: Path) -> tuple[bytes, list[bytes]]:
    """A JSON Lines file, every line checked to be UTF-8."""
    try:
        content = path.read_bytes()
    except OSError as error:
        raise InvalidChange(f"{path} cannot be read: {error.strerror}") from None
    lines = content.splitlines()
    for number, line in enumerate(lines, start=1):
        _utf8(line, str(path), number)
    return content, lines


class _LedgerCommands(click.Group):
    """Usage mistakes exit 1 (click's default is 2): 2 means done, with items left for review."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with _usage_errors_exit_1():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _usage_errors_exit_1():
            return super().invoke(ctx)


class _UsageError(click.UsageError):
    exit_code = Exit.ERROR


@contextmanager
def _usage_errors_exit_1() -> Iterator[None]:
    try:
        yield
    except click.UsageError as error:
        if isinstance(error, _UsageError):
            raise
        raise _UsageError(error.format_message(), error.ctx) from None


def _verb(name: str) -> Callable[[F], F]:
    """Register a command with the shared options and error translation."""

    def register(command: F) -> F:
        return main.command(name)(_common(_errors_as_messages(command)))  # type: ignore[return-value]

    return register


@click.group(cls=_LedgerCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="changeledger")
def main() -> None:
    """changeledger: record every automation action, inspect any point in time."""


def _open(db: str | None, *, create: bool = False) -> Ledger:
    return open_ledger(db, create=create)


def _emit(as_json: bool, payload: Any, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    else:
        human()


def _table(headers: list[str], rows: Iterable[list[Any]]) -> None:
    text_rows = [[_cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    click.echo(line.rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for row in text_rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return orjson.dumps(encode_value(value)).decode()


def _config_option(command: F) -> F:
    return click.option(
        "--config",
        envvar="LEDGER_CONFIG",
        default=None,
        help="Systems configuration [env LEDGER_CONFIG; default ./ledger.toml].",
    )(command)
