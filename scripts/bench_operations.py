"""Measure what observability costs on a long log: `metrics_text`, reading every notice of the
log, and a delivery with nothing new, on a SQLite ledger of BATCHES x 2,000 recorded actions.

    .venv/bin/python scripts/bench_operations.py [BATCHES] [LEDGER_FILE]
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger import Address, Change, deliver_notices, metrics_text, open_ledger
from ledger.lane_control import pause_lane, record_run
from ledger.lanes import LaneConfig
from ledger.notify import read_notices
from ledger.notify.log import LogNotifier
from ledger.triggers import RunStatistics

BATCH = 2000


def timed(label: str, work: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = work()
    print(f"{label:<32} {time.perf_counter() - start:8.3f} s")
    return result


def main() -> None:
    batches = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    path = sys.argv[2] if len(sys.argv) > 2 else str(Path(tempfile.mkdtemp()) / "ledger.db")
    ledger = open_ledger(path, create=True)
    for b in range(batches):
        changes = [
            Change(Address.parse(f"crm/contacts/{b}-{i}"), "create", values={"n": i})
            for i in range(BATCH)
        ]
        ledger.record_all(changes, batch=f"run-{b}", workflow="lead-sync", close_batch=True)
        record_run(ledger, "lead-sync", f"run-{b}", RunStatistics(), completed=True)
    pause_lane(ledger, "lead-sync", "bench", "bench")
    end = ledger.recorder.max_notification_id() or 0
    print(f"{end} events in {path}")
    lanes = {"lead-sync": LaneConfig("lead-sync", notify=("log",))}
    notifiers = {"log": LogNotifier("log", level="info")}  # below the default level: silent
    timed("metrics_text", lambda: metrics_text(ledger, lanes))
    timed("read_notices (whole log)", lambda: read_notices(ledger, 0, end, lanes))
    timed("deliver_notices (first)", lambda: deliver_notices(ledger, notifiers, lanes))
    timed("deliver_notices (nothing new)", lambda: deliver_notices(ledger, notifiers, lanes))


if __name__ == "__main__":
    main()
