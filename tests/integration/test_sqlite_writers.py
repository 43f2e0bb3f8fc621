"""Processes writing one SQLite ledger at once wait for each other's write lock, never fail
with "database is locked": every write transaction takes the lock before it reads (a
transaction that read first cannot upgrade once another writer has committed, and SQLite
answers it at once, without waiting). Found by two `ledger serve` workers saving
Idempotency-Key claims: one answered 503."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from ledger import list_tokens, open_ledger
from ledger.tokens import create_token

SAVES = 150


def _issue(db: str, prefix: str, start: object) -> None:
    ledger = open_ledger(db, create=False)
    try:
        start.wait()  # type: ignore[attr-defined]
        for n in range(SAVES):
            create_token(ledger, f"{prefix}-{n}", ["read"], actor="test")
    finally:
        ledger.close()


def test_two_processes_saving_at_once_both_finish(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")
    open_ledger(db, create=True).close()
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(2)
    workers = [spawn.Process(target=_issue, args=(db, name, start)) for name in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    ledger = open_ledger(db, create=False)
    try:
        assert len(list_tokens(ledger)) == 2 * SAVES
    finally:
        ledger.close()
