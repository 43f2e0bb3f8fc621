"""The old name of `ledger.cli.exit`, for `ledger/cli_reconcile.py` until the lead moves it
into the `ledger.cli` package (then this module goes)."""

# for cli_reconcile.py until the lead moves it
from ledger.cli.exit import Exit

__all__ = ["Exit"]
