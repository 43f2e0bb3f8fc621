"""What every `ledger` command shares: the command group, `--db`/`--json`/`--config`, and
table/JSON output. Errors become messages in `ledger.cli.errors`, exit codes come from
`ledger.cli.exit`.

After a command that opened the ledger and wrote to it, the notices its events make are logged
and delivered to the configured notifiers (`deliver_after`), once the command's own work and
output are done: a notifier that fails is recorded and warned about on stderr in one line, and
never changes the command's exit code."""

from __future__ import annotations

import functools
import getpass
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from typing import Any, cast

import click
import orjson
import structlog

from ledger.application import Ledger
from ledger.bootstrap import DB_KEY, open_ledger
from ledger.cli.errors import F, _database_failures, errors_as_messages, usage_errors_exit_1
from ledger.encoding import encode_value
from ledger.errors import LedgerError
from ledger.lane_config import load_lanes
from ledger.logs import LEVEL_KEY, LogFormat, bound, configure, get_logger
from ledger.notify import deliver_notices, load_notifiers, read_notices
from ledger.settings import config_path
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
    """--db and --json, accepted by every command; its correlation ids bound to its log lines."""
    command = _with_correlation_ids(command)
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
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    envvar="LEDGER_LOG_FORMAT",
    default="text",
    show_default=True,
    help=f"Log lines on stderr as text or JSON [env LEDGER_LOG_FORMAT; level: env {LEVEL_KEY}, "
    "default warning].",
)
def main(log_format: LogFormat) -> None:
    """changeledger: record every automation action, inspect any point in time."""
    try:
        configure(log_format, os.environ.get(LEVEL_KEY) or "warning")
    except LedgerError as error:
        raise click.ClickException(str(error)) from None
    structlog.contextvars.bind_contextvars(run_id=uuid.uuid4().hex[:12])


def verb(name: str) -> Callable[[F], F]:
    """Register a command with the shared options and error translation."""

    def register(command: F) -> F:
        return main.command(name)(common(errors_as_messages(command)))  # type: ignore[return-value]

    return register


def open_db(db: str | None, *, create: bool = False, notices: bool = True) -> Ledger:
    """The ledger at ``--db``; only `init` creates one. Unless ``notices`` is False, what the
    command writes to it is delivered as notices when the command ends (`deliver_after`)."""
    ledger = open_ledger(db, create=create)
    ctx = click.get_current_context(silent=True)
    if notices and ctx is not None and _WATCH not in ctx.find_root().meta:
        root = ctx.find_root()
        start = ledger.recorder.max_notification_id() or 0
        root.meta[_WATCH] = (ledger, db, ctx.params.get("config"), start)
        root.call_on_close(functools.partial(deliver_after, root))
    return ledger


_WATCH = "ledger.notices"
_IDS = "ledger.correlation_ids"
_log = get_logger("ledger.cli")


def deliver_after(root: click.Context) -> None:
    """The post-command hook: log the notices of the events the command wrote and deliver
    them to the configured notifiers. Its failure is a one-line warning on stderr, never the
    command's failure: what the command did stands and the notices wait for `ledger notify`."""
    ledger, db, config, start = root.meta.pop(_WATCH)
    expected: tuple[type[Exception], ...] = (LedgerError, OSError, *_database_failures())
    try:
        with bound(**root.meta.get(_IDS, {})):
            _deliver_after(ledger, db, config, start)
    except expected as error:
        click.echo(
            f"warning: notices were not delivered ({error}); what the command did stands, "
            "run `ledger notify` once this is fixed",
            err=True,
        )


def _deliver_after(ledger: Ledger, db: str | None, config: str | None, start: int) -> None:
    if ledger.closing.is_set():
        ledger = open_ledger(db)
    end = ledger.recorder.max_notification_id() or 0
    if end <= start or not config_path(config).is_file():
        return
    lanes = load_lanes(config)
    if _log.isEnabledFor(logging.INFO):  # the key moments, whether or not anyone is told
        for notice in read_notices(ledger, start, end, lanes):
            _log.info(
                notice.kind,
                position=notice.position,
                notice=notice.id,
                workflows=list(notice.workflows),
                plan=notice.details.get("plan"),
                summary=notice.summary,
            )
    notifiers = load_notifiers(config)
    if not notifiers:
        return
    report = deliver_notices(ledger, notifiers, lanes)
    for failure in report.failures:
        click.echo(f"warning: {failure.message}", err=True)


def _with_correlation_ids(command: F) -> F:
    """Bind the command's workflow, batch, action and plan (those it was given) to every log
    line it writes."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ids = {
            "workflow": kwargs.get("workflow"),
            "batch": kwargs.get("batch") or kwargs.get("batches") or None,
            "action": kwargs.get("action") or kwargs.get("entity"),
            "plan": kwargs.get("plan"),
        }
        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            ctx.find_root().meta[_IDS] = ids  # for the hook, which runs after this returns
        with bound(**ids):
            _log.info("command", command=ctx.command_path if ctx is not None else None)
            return command(*args, **kwargs)

    return cast(F, wrapper)


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
