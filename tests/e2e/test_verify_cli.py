"""`ledger verify` and `ledger digest` as a user runs them (real processes): exit 0 naming the
size and root when intact, exit 1 naming the first break, a digest that proves the log only
grew, and --json on each."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def ledger(tmp_path: Path) -> Run:
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_SIGNING_KEY"}
    env["LEDGER_DB"] = str(tmp_path / "ledger.db")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ledger", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    assert run("init").returncode == 0
    for key in range(3):
        recorded = run(
            "record", "--entity", f"crm/contacts/{key}", "--op", "create", "--set", "a=1"
        )
        assert recorded.returncode == 0, recorded.stderr
    return run


def test_init_creates_the_signing_key_beside_the_ledger(ledger: Run, tmp_path: Path) -> None:
    key, public = tmp_path / "ledger.db.key", tmp_path / "ledger.db.pub"
    assert key.stat().st_mode & 0o777 == 0o600
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")


def test_an_intact_ledger_verifies_naming_its_size_and_root(ledger: Run) -> None:
    shown = ledger("verify")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("history intact: ")
    report = json.loads(ledger("verify", "--json").stdout)
    assert report["ok"] is True and report["first_break"] is None
    assert f"{report['size']} events, root {report['root']}" in shown.stdout


def test_a_tampered_byte_exits_1_naming_the_position_and_the_event(
    ledger: Run, tmp_path: Path
) -> None:
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        position, ident = db.execute(
            "SELECT rowid, originator_id FROM stored_events ORDER BY rowid LIMIT 1 OFFSET 2"
        ).fetchone()
        db.execute(
            "UPDATE stored_events SET state = CAST(state || x'20' AS BLOB) WHERE rowid = ?",
            [position],
        )
    db.close()
    shown = ledger("verify")
    assert shown.returncode == 1
    error = shown.stderr.strip()
    assert error.startswith(f"Error: history broken (modified: position {position}, leaf 2, ")
    assert "Traceback" not in shown.stderr and len(error.splitlines()) == 1
    report = json.loads(ledger("verify", "--json").stdout)
    assert report["first_break"]["kind"] == "modified"
    assert report["first_break"]["position"] == position
    assert report["first_break"]["event_id"].replace("-", "") == ident


def test_a_digest_then_more_writes_verifies_as_an_extension(ledger: Run, tmp_path: Path) -> None:
    taken = ledger("digest", "--out", "before.json", "--json")
    assert taken.returncode == 0, taken.stderr
    size = json.loads(taken.stdout)["size"]
    assert json.loads((tmp_path / "before.json").read_text())["size"] == size
    assert (
        ledger("record", "--entity", "crm/contacts/9", "--op", "create", "--set", "a=2").returncode
        == 0
    )
    shown = ledger("verify", "--digest", "before.json", "--public-key", "ledger.db.pub")
    assert shown.returncode == 0, shown.stderr
    assert f"the log extends the digest of {size} events" in shown.stdout
    again = ledger("digest", "--out", "before.json")
    assert again.returncode == 1 and "already exists" in again.stderr


def test_a_truncated_tail_with_its_heads_fails_against_a_digest(
    ledger: Run, tmp_path: Path
) -> None:
    assert ledger("digest", "--out", "kept.json").returncode == 0
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        (size,) = db.execute("SELECT MIN(size) FROM ledger_tree_heads").fetchone()
        head = db.execute(
            "SELECT root, signed_at, key_id, signature FROM ledger_tree_heads WHERE size = ?",
            [size],
        ).fetchone()
        (cut,) = db.execute("SELECT position FROM ledger_leaves WHERE leaf = ?", [size]).fetchone()
        db.execute("DELETE FROM stored_events WHERE rowid >= ?", [cut])
        db.execute("DELETE FROM ledger_leaves WHERE position >= ?", [cut])
        db.execute("DELETE FROM ledger_tree_heads WHERE size > ?", [size])
        db.execute(
            "UPDATE ledger_tree SET size = ?, root = ?, signed_at = ?, key_id = ?, signature = ?",
            [size, *head],
        )
    db.close()
    assert ledger("verify").returncode == 0  # documented: the heads alone cannot show it
    shown = ledger("verify", "--digest", "kept.json")
    assert shown.returncode == 1
    assert "history broken (truncated" in shown.stderr


def test_a_digest_from_another_ledger_is_refused(ledger: Run, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_SIGNING_KEY"}
    env["LEDGER_DB"] = str(other / "other.db")
    for args in (["init"], ["digest", "--out", str(other / "d.json")]):
        subprocess.run(
            [sys.executable, "-m", "ledger", *args], env=env, check=True, capture_output=True
        )
    shown = ledger("verify", "--digest", str(other / "d.json"))
    assert shown.returncode == 1
    assert "not by the ledger's key" in shown.stderr
