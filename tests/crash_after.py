"""Runs the `ledger` command and kills it with SIGKILL at a counted step instead of a moment on
the clock, so a crash test proves the same thing on a loaded machine and on a fast one.

    python tests/crash_after.py KIND:N ledger-arguments...

KIND names the window the kill lands in:
- ``before-write``: just before the N-th write through the SQL adapter (intents declared,
  target untouched);
- ``statement``: just before the N-th UPDATE, INSERT or DELETE the SQL adapter sends (one per
  group of like writes, inside the target transaction: the kill lands half way through it);
- ``write``: just after the N-th SQL adapter write returned (target committed, the ledger not
  yet settled: the window exactly-once depends on);
- ``save``: just after the N-th `Ledger.save` (the ledger committed, the next step not taken).
If the command finishes before step N, it exits as it would have.
"""

import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from adapters.sql import SqlAdapter
from ledger import Ledger
from ledger.cli import main

KINDS = ("before-write", "statement", "write", "save")
CRASH_AFTER = [sys.executable, __file__]  # then "KIND:N", then the ledger arguments


def crash_schedule(seed: int, chunks: int) -> list[str]:
    """Six kills, each after a counted step, every window at least once: before a target
    write, inside it, after it and before the ledger settles, after a ledger commit. A run
    works in ``chunks`` chunks (one target write each); the counts stay small enough that
    each run is killed while work remains."""
    rng = random.Random(seed)
    most = max(1, chunks // 6)
    return [
        f"{kind}:{rng.randint(1, limit)}"
        for kind, limit in [
            ("write", most),
            ("before-write", most),
            ("statement", most),
            ("save", 2 * most),
            ("write", most),
            ("save", 2 * most),
        ]
    ]


def kill_and_recover(
    arguments: list[str],
    env: dict[str, str],
    *,
    seed: int,
    chunks: int,
    after_recover: Callable[[], None],
) -> set[str]:
    """Run ``ledger arguments`` once per kill of `crash_schedule`, then ``ledger recover`` and
    ``after_recover`` (the test's invariant) after each; the windows the kills landed in."""
    ledger = [sys.executable, "-m", "ledger"]
    killed = set()
    for crash in crash_schedule(seed, chunks):
        process = subprocess.run(
            [*CRASH_AFTER, crash, *arguments], env=env, capture_output=True, text=True
        )
        assert process.returncode in (0, -signal.SIGKILL), process.stderr
        if process.returncode == -signal.SIGKILL:
            killed.add(crash.split(":")[0])
        subprocess.run([*ledger, "recover"], env=env, check=True, capture_output=True)
        after_recover()
    return killed


def counter(limit: int) -> Callable[[], None]:
    seen = 0

    def step() -> None:
        nonlocal seen
        seen += 1
        if seen == limit:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    return step


def after(cls: type, name: str, step: Callable[[], None]) -> None:
    original = getattr(cls, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        step()
        return result

    setattr(cls, name, wrapped)


def before(cls: type, name: str, step: Callable[[], None]) -> None:
    original = getattr(cls, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        step()
        return original(*args, **kwargs)

    setattr(cls, name, wrapped)


def install(kind: str, limit: int) -> None:
    step = counter(limit)
    if kind == "before-write":
        before(SqlAdapter, "write", step)
    elif kind == "write":
        after(SqlAdapter, "write", step)
    elif kind == "save":
        after(Ledger, "save", step)
    elif kind == "statement":

        def on_statement(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            if statement.lstrip().split(None, 1)[0].upper() in ("UPDATE", "INSERT", "DELETE"):
                step()

        event.listen(Engine, "before_cursor_execute", on_statement)
    else:
        raise SystemExit(f"crash_after.py: unknown kind {kind!r}; kinds are {', '.join(KINDS)}")


if __name__ == "__main__":
    kind, _, limit = sys.argv[1].partition(":")
    install(kind, int(limit))
    sys.argv = ["ledger", *sys.argv[2:]]
    main()
