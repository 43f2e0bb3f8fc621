"""The README's Python example runs as written, against real files in a temporary directory."""

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)


def a_crm(path: Path) -> None:
    """The SQLite CRM the README's adapter example writes to: contact 42, a lead."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT, lifecycle_stage TEXT)"
        )
        db.execute("INSERT INTO contacts VALUES (42, 'a@example.com', 'lead')")


def test_the_readme_has_a_python_example():
    assert BLOCKS


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block {n}" for n in range(1, len(BLOCKS) + 1)])
def test_each_python_block_of_the_readme_runs(block, tmp_path):
    a_crm(tmp_path / "crm.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    done = subprocess.run(
        [sys.executable, "-c", block],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # Each print prints what its comment says (or one of the outcomes the comment lists).
    said = re.findall(r"^\s*print\(.*\)\s+# (.*)$", block, re.MULTILINE)
    printed = done.stdout.splitlines()
    assert len(printed) == len(said), done.stdout
    for line, comment in zip(printed, said, strict=True):
        assert line == comment or line in re.split(r",\s*|\s+or\s+", comment), (line, comment)
