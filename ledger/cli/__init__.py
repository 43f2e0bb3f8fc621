"""The `ledger` command: a thin edge over the library, tables for people and --json for machines.

Each command group lives in its own module and registers itself on the group in
`ledger.cli.base` when imported here; the commands parse their options, call the library and
print. Library errors become one-line messages in `ledger.cli.errors` only, and every command
exits with a code of the one table in `ledger.cli.exit`.
"""

from ledger.cli import (  # noqa: F401  (registration)
    apply,
    inspect,
    integrity,
    lanes,
    operations,
    receipts,
    reconcile,
    recording,
    rollback,
    serve,
    tokens,
    track,
)
from ledger.cli.base import main

__all__ = ["main"]  # the `ledger` entry point
