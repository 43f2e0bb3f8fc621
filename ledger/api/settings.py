"""What `ledger serve` hands each worker through its environment, and the body limit: kept
apart from the app so the CLI names them without importing FastAPI."""

from __future__ import annotations

from typing import Final

DEFAULT_MAX_BODY: Final = 5 * 1024 * 1024  # bytes: about 20,000 changes of a CRM sync
MAX_BODY_KEY: Final = "LEDGER_MAX_BODY"
CONFIG_KEY: Final = "LEDGER_CONFIG"
PLANS_DIR_KEY: Final = "LEDGER_PLANS_DIR"
