"""The command notifier: a program run with the notice's JSON on its standard input.

The command is an argv list (no shell, so nothing in a notice is ever interpreted); a nonzero
exit, a timeout or a program that cannot start is a failure, with the last line it wrote to
stderr.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import timedelta

from ledger.notify.notices import Notice
from ledger.notify.notifier import NotifierFailed

_LEASE_MARGIN = timedelta(seconds=30)


@dataclass(frozen=True)
class Command:
    """Run ``argv`` once per notice."""

    name: str
    argv: tuple[str, ...]
    timeout: float = 30.0

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.timeout) + _LEASE_MARGIN

    def send(self, notice: Notice) -> int:
        try:
            done = subprocess.run(
                self.argv, input=notice.body(), capture_output=True, timeout=self.timeout
            )
        except subprocess.TimeoutExpired:
            raise NotifierFailed(f"{self.argv[0]} did not finish within {self.timeout}s") from None
        except OSError as error:
            raise NotifierFailed(f"{self.argv[0]} could not start: {error.strerror}") from None
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise NotifierFailed(
                f"{self.argv[0]} exited with {done.returncode}" + (f": {said[-1]}" if said else "")
            )
        return 1
