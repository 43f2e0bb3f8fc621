"""What the CLI prints with --json reads back as the same value: big integers, decimals, dates,
datetimes with offsets, JSON null versus SQL NULL, and documents shaped like the encoding's
own tags — in receipts, state, history, collection and diff."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from ledger import Address, Change, open_ledger
from ledger.encoding import decode_value
from ledger.values import JSON_NULL, same

LEDGER = [sys.executable, "-m", "ledger"]
AWKWARD = {
    "big": 2**80,
    "negative_big": -(2**70),
    "money": Decimal("19.990"),
    "at": datetime(2026, 11, 24, 9, 12, 0, 123456, tzinfo=timezone(timedelta(hours=-5))),
    "doc_null": JSON_NULL,
    "sql_null": None,
    "tag_shaped": {"$date": "not a date", "_type_": "decimal", "_data_": "1"},
}


def cli(db: Path, *args: str) -> Any:
    result = subprocess.run(
        [*LEDGER, *args, "--db", str(db), "--json"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


def cli_lines(db: Path, *args: str) -> list[Any]:
    result = subprocess.run(
        [*LEDGER, *args, "--db", str(db), "--json"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_awkward_values_print_and_read_back_exactly_everywhere(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    ledger = open_ledger(str(db))
    deal = Address.parse("crm/deals/1")
    ledger.record(Change(deal, "create", values={"stage": "new"}), batch="b0")
    ledger.checkpoint("before")
    ledger.record(Change(deal, "update", values=AWKWARD), batch="b1")
    ledger.close()

    state = cli(db, "state", "crm/deals/1")
    assert same(decode_value(state["fields"]), {"stage": "new", **AWKWARD})
    history = cli(db, "history", "crm/deals/1")
    delta = history[-1]["delta"]
    assert same({name: decode_value(pair[1]) for name, pair in delta.items()}, AWKWARD)
    (record,) = cli_lines(db, "collection", "crm/deals")
    assert same(decode_value(record["fields"]), {"stage": "new", **AWKWARD})
    assert record["recorded_at"] is not None
    diff = cli(db, "diff", "crm/deals/1", "before")
    assert diff  # the awkward fields differ from the checkpoint, and print

    # What was printed is accepted back as input, to the same values.
    line = json.dumps({"entity": "crm/deals/2", "op": "create", "set": state["fields"]})
    (tmp_path / "again.jsonl").write_text(line + "\n")
    cli(db, "import", str(tmp_path / "again.jsonl"), "--batch", "b2")
    again = open_ledger(str(db)).state(Address.parse("crm/deals/2"))
    assert same(again.fields, {"stage": "new", **AWKWARD})
