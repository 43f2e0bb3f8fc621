"""`python -m ledger` runs the `ledger` command."""

from ledger.cli import main

main()
