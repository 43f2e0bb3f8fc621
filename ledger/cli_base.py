"""The old names of `ledger.cli.base`, for `ledger/cli_reconcile.py` (and its output module)
until the lead moves it into the `ledger.cli` package (then this module goes).

Import it only through `ledger.cli` or `ledger.cli_reconcile`: imported first on its own, the
package's `__init__` (which registers `cli_reconcile`) would find it half-initialised."""

# for cli_reconcile.py until the lead moves it
from ledger.cli.base import F, main
from ledger.cli.base import common as _common
from ledger.cli.base import config_option as _config_option
from ledger.cli.base import emit as _emit
from ledger.cli.base import errors_as_messages as _errors_as_messages
from ledger.cli.base import open_db as _open
from ledger.cli.base import table as _table

__all__ = [
    "F",
    "_common",
    "_config_option",
    "_emit",
    "_errors_as_messages",
    "_open",
    "_table",
    "main",
]
