"""What every `ledger` command shares: the command group, `--db`/`--json`/`--config`, and
table/JSON output. Errors become messages in `ledger.cli.errors`, exit codes come from
`ledger.cli.exit`."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterable
from typing import Any

import click
import orjson

from ledger.application import Ledger
from ledger.bootstrap import DB_KEY, open_ledger
from ledger.cli.errors import F, errors_as_messages, usage_errors_exit_1
from ledger.encoding import encode_value
from ledger.values import ABSENT

__all__ = [
    "F",
    "actor_option",
    "common",
    "config_option",
    "emit",
    "errors_as_messages",
    "main",
    "open_db",
    "table",
    "verb",
]


def common(command: F) -> F:
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


def config_option(command: F) -> F:
    """--config, for the commands that reach the configured systems."""
    return click.option(
        "--config",
        envvar="LEDGER_CONFIG",
        default=None,
        help="Systems configuration [env LEDGER_CONFIG; default ./ledger.toml].",
    )(command)


ACTOR_KEY = "LEDGER_ACTOR"


def actor_option(command: F) -> F:
    """--actor, who is acting: self-asserted on the command line (the HTTP API authenticates
    it); ``$LEDGER_ACTOR``, else the login name."""
    return click.option(
        "--actor",
        envvar=ACTOR_KEY,
        default=_login,
        show_default="login name",
        help=f"Who is acting, recorded with what this does [env {ACTOR_KEY}].",
    )(command)


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user database entry (containers): say so, not a traceback
        return "unknown"


class _LedgerCommands(click.Group):
    """Usage mistakes exit 1 (click's default is 2): 2 means done, with items left for review."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with usage_errors_exit_1():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with usage_errors_exit_1():
            return super().invoke(ctx)


@click.group(cls=_LedgerCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="changeledger")
def main() -> None:
    """changeledger: record every automation action, inspect any point in time."""


def verb(name: str) -> Callable[[F], F]:
    """Register a command with the shared options and error translation."""

    def register(command: F) -> F:
        return main.command(name)(common(errors_as_messages(command)))  # type: ignore[return-value]

    return register


def open_db(db: str | None, *, create: bool = False) -> Ledger:
    """The ledger at ``--db``; only `init` creates one."""
    return open_ledger(db, create=create)


def emit(as_json: bool, payload: Any, human: Callable[[], None]) -> None:
    """JSON for machines (``--json``), else what ``human`` prints for people."""
    if as_json:
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    else:
        human()


def table(headers: list[str], rows: Iterable[list[Any]]) -> None:
    """Rows as aligned columns under their headers."""
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
