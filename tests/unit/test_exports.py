"""The public API is small, explicit and sorted."""

import ledger


def test_all_is_sorted_and_every_name_exists():
    assert ledger.__all__ == sorted(ledger.__all__)
    for name in ledger.__all__:
        assert hasattr(ledger, name), name


def test_nothing_public_is_left_out_of_all():
    public = {name for name in vars(ledger) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(ledger, name)).__name__ == "module"}
    assert public - modules == set(ledger.__all__)


def test_adapters_import_first_without_a_cycle():
    import subprocess
    import sys

    for module in ("ledger.ports", "adapters.sql", "adapters.files", "adapters.http"):
        result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
        assert result.returncode == 0, result.stderr.decode()
