"""The log notifier: each notice as one structured log line (``ledger.notice``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from ledger.logs import get_logger
from ledger.notify.notices import Notice

Level = Literal["info", "warning", "error"]
_log = get_logger("ledger.notice")


@dataclass(frozen=True)
class LogNotifier:
    """Log every notice at ``level``, its correlation ids (workflow, batch, plan) as fields."""

    name: str
    level: Level = "warning"

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=30)

    def send(self, notice: Notice) -> int:
        details = notice.details
        _log.log(
            logging.getLevelName(self.level.upper()),
            notice.kind,
            notice=notice.id,
            position=notice.position,
            workflow=",".join(notice.workflows) or None,
            batch=details.get("batch"),
            plan=details.get("plan"),
            summary=notice.summary,
        )
        return 1
