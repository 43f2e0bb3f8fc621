"""Runs one task in this fresh process and prints its result, with this process's peak RSS.

Usage: ``python -m bench.child TASK PARAMS_JSON``; the last line of stdout is a JSON object.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
from typing import Any

TASKS = {
    "seed_ledger": "bench.write_tasks:seed_ledger",
    "seed_plain": "bench.write_tasks:seed_plain",
    "ledger_batch": "bench.write_tasks:ledger_batch",
    "ledger_pg_batch": "bench.write_tasks:ledger_pg_batch",
    "export_batch": "bench.raw:export_chunks",
    "raw_batch_chunks": "bench.raw:raw_batch_chunks",
    "seed_apply": "bench.apply_tasks:seed_apply",
    "ledger_apply": "bench.apply_tasks:ledger_apply",
    "raw_apply": "bench.apply_tasks:raw_apply",
    "ledger_single": "bench.write_tasks:ledger_single",
    "plain_batch": "bench.write_tasks:plain_batch",
    "raw_batch": "bench.raw:raw_batch",
    "raw_single": "bench.raw:raw_single",
    "seed_history": "bench.read_tasks:seed_history",
    "ledger_state": "bench.read_tasks:ledger_state",
    "replay_state": "bench.read_tasks:replay_state",
    "ledger_collection": "bench.read_tasks:ledger_collection",
    "raw_collection": "bench.raw:raw_collection",
    "seed_target": "bench.reconcile_tasks:seed_target",
    "ledger_reconcile": "bench.reconcile_tasks:ledger_reconcile",
    "raw_reconcile": "bench.reconcile_tasks:raw_reconcile",
    "seed_rollback": "bench.rollback_tasks:seed_rollback",
    "ledger_rollback": "bench.rollback_tasks:ledger_rollback",
    "export_rollback": "bench.rollback_tasks:export_rollback",
    "raw_rollback": "bench.rollback_tasks:raw_rollback",
    "empty_ledger": "bench.track_tasks:empty_ledger",
    "ledger_track": "bench.track_tasks:ledger_track",
    "export_track": "bench.track_tasks:export_track",
    "raw_track": "bench.track_tasks:raw_track",
    "seed_verify": "bench.integrity_tasks:seed_verify",
    "ledger_verify": "bench.integrity_tasks:ledger_verify",
    "raw_verify": "bench.integrity_tasks:raw_verify",
    "http_setup": "bench.http_tasks:http_setup",
    "http_ledger": "bench.http_tasks:http_ledger",
    "http_floor": "bench.http_tasks:http_floor",
    "seed_recovery": "bench.recovery_tasks:seed_recovery",
    "ledger_recover": "bench.recovery_tasks:ledger_recover",
    "per_write_recover": "bench.recovery_tasks:per_write_recover",
}


def run(task: str, params: dict[str, Any]) -> dict[str, Any]:
    module, name = TASKS[task].split(":")
    result: dict[str, Any] = getattr(importlib.import_module(module), name)(**params)
    # ru_maxrss is in KiB on Linux.
    result["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], json.loads(sys.argv[2]))))
