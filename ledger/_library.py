"""Imports the eventsourcing library without the one setting it reads from the environment
at import time: ``TZINFO_TOPIC`` (the timezone of every event's timestamp; a bad topic fails
the import). The ledger owns its environment (docs/cli.md): its times are UTC whatever that
variable says. `ledger/__init__.py` imports this module first."""

from __future__ import annotations

import os

_topic = os.environ.pop("TZINFO_TOPIC", None)
try:
    import eventsourcing.domain  # noqa: F401
finally:
    if _topic is not None:
        os.environ["TZINFO_TOPIC"] = _topic
