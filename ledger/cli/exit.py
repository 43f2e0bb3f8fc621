"""The exit codes of every `ledger` command: one table, so a script can tell the outcomes apart.

    0  DONE     done, nothing left
    1  ERROR    bad input or configuration, an unreachable system, a usage mistake
    2  REVIEW   done, with items left for review: conflicts, drift, a blocked plan,
                the rest of a canary batch
    3  REFUSED  some writes were refused (stale) or failed

When a run has both refused writes and items left for review, it exits 3. The table is
documented in docs/cli.md; tests/e2e/test_exit_codes.py checks it command by command.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    DONE = 0
    ERROR = 1
    REVIEW = 2
    REFUSED = 3
