"""Structured logs: one `structlog` chain over the standard `logging` module, correlation ids bound
per context.

The library never configures logging globally: its loggers are `structlog` wrappers around
``logging.getLogger("ledger....")``, so an application embedding the ledger routes the lines as it
routes any other. The CLI calls `configure` once (``--log-format``, ``$LEDGER_LOG``) to render them
as JSON or text on stderr. Correlation ids (workflow, batch, action, plan, run id) are bound with
`bound` and appear on every line logged inside it, from any module.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import structlog

from ledger.errors import ConfigurationError

LEVEL_KEY = "LEDGER_LOG"
LogFormat = Literal["json", "text"]
CORRELATION_IDS = ("workflow", "batch", "action", "plan", "run_id")
_ROOT = "ledger"
_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def get_logger(name: str) -> Any:
    """A structured logger writing through ``logging.getLogger(name)`` (a ``ledger.*`` name)."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )


def configure(log_format: LogFormat = "text", level: str = "warning") -> None:
    """Render the ``ledger`` loggers on stderr as JSON lines or text, from ``level`` up. Called
    again, it replaces its own handler (never adds a second)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigurationError(
            f"{LEVEL_KEY}={level!r} is not a log level; use debug, info, warning or error"
        )
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    handler = _Stderr()
    handler.set_name("ledger-structlog")
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=_SHARED,
        )
    )
    root = logging.getLogger(_ROOT)
    for old in [h for h in root.handlers if h.get_name() == "ledger-structlog"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)


class _Stderr(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a line is logged (a test runner swaps it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


@contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """Bind correlation ids (those given and not None) to every line logged inside."""
    with structlog.contextvars.bound_contextvars(
        **{name: value for name, value in ids.items() if value is not None}
    ):
        yield
