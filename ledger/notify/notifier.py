"""What every notifier is to a delivery: a name, how long one notice may take, and `send`."""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from ledger.errors import LedgerError
from ledger.notify.notices import Notice


class NotifierFailed(LedgerError):
    """A notifier could not deliver a notice, after ``attempts`` tries; recorded, never raised
    past the delivery."""

    def __init__(self, message: str, attempts: int = 1):
        super().__init__(message)
        self.attempts = attempts


class Notifier(Protocol):
    """Delivers one notice, or raises `NotifierFailed` saying why."""

    @property
    def name(self) -> str:
        """The name the configuration gives it (``[notifiers.NAME]``)."""
        ...

    @property
    def lease(self) -> timedelta:
        """The longest one `send` may take, retries included: how long a delivery holds its
        claim per notice before another process may take over."""
        ...

    def send(self, notice: Notice) -> int:
        """Deliver ``notice``; the number of attempts it took."""
        ...
