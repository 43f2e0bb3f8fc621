"""Composite and awkward keys: one text per record however it is spelled, and one order for
every scan and merge — SQL tables on both engines, both ledger stores, CSV and JSON Lines.

Key parts mix prefixes ('eu' / 'eu-west'), integers (2 / 10), negatives, '/', '%', an
apostrophe, spaces and non-ASCII text; half the changes spell their keys with every
character percent-encoded, as the old key form did.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from fixtures.tables import columns, create_table, orders

from adapters.files import CsvAdapter, CsvCollection, JsonLinesAdapter, JsonLinesCollection
from adapters.sql import SqlAdapter, SqlCollection
from ledger import (
    Address,
    Change,
    Ledger,
    RollbackScope,
    apply_rollback,
    compare_with_target,
    open_ledger,
    plan_rollback,
)
from ledger.keys import join_key
from ledger.ports import Adapter
from ledger.runs import Run, Target

REGIONS = ["eu", "eu-west", "a/b", "50%", "o'brien", "with space", "Zürich", "日本", "-x"]
NUMBERS = [2, 10, -3, 9]
KEYS = [(region, number) for region in REGIONS for number in NUMBERS]


def spelled(index: int, parts: tuple[object, ...]) -> str:
    """The key as a change may spell it: the one form, or every character percent-encoded."""
    if index % 2:
        return join_key(parts)
    return "/".join(quote(str(part), safe="") for part in parts)


def orders_table(url: str, rows: list[tuple[str, int]] = ()) -> None:
    create_table(url, orders, [{"region": r, "id": i, "n": i} for r, i in rows]).dispose()


def create_all_then_roll_back(ledger: Ledger, adapter: Adapter, collection: str) -> None:
    """Create every key through a run, check reconcile and the ledger's stream agree with the
    scan, roll the batch back and check the system is empty again."""
    target = Target(adapter, collection)
    changes = [
        Change(Address(adapter.system, collection, spelled(i, parts)), "create", values={"n": i})
        for i, parts in enumerate(KEYS)
    ]
    with Run(ledger, "orders-import") as run:
        outcomes = run.apply(target, changes)
    assert {outcome.status for outcome in outcomes} == {"applied"}
    scanned = [key for key, _ in adapter.scan(collection)]
    assert scanned == sorted(join_key(parts) for parts in KEYS)
    known = [state.entity.split("/", 2)[2] for state in ledger.collection("crm", collection)]
    assert known == scanned
    assert list(compare_with_target(ledger, adapter, collection)) == []

    rollback = plan_rollback(ledger, RollbackScope(batches=("orders-import",)), {"crm": adapter})
    report = apply_rollback(ledger, rollback, {"crm": adapter})
    assert report.mismatches == []
    assert list(adapter.scan(collection)) == []
    assert list(compare_with_target(ledger, adapter, collection)) == []


def test_sql_composite_keys_scan_in_key_text_order(sql_url: str) -> None:
    orders_table(sql_url, KEYS)
    adapter = SqlAdapter("crm", sql_url, {"orders": SqlCollection("orders", ("region", "id"))})
    keys = [key for key, _ in adapter.scan("orders")]
    assert keys == sorted(join_key(parts) for parts in KEYS)
    assert keys.index("eu-west/2") < keys.index("eu/9")  # not tuple order
    assert adapter.read("orders", ["a%2Fb/10", "50%25/-3", "Zürich/2"]) == {
        "a%2Fb/10": {"n": 10},
        "50%25/-3": {"n": -3},
        "Zürich/2": {"n": 2},
    }
    adapter.close()


def test_sql_refuses_a_key_text_that_is_not_the_records_one_form(sql_url: str) -> None:
    orders_table(sql_url, [("eu", 5)])
    adapter = SqlAdapter("crm", sql_url, {"orders": SqlCollection("orders", ("region", "id"))})
    for wrong, why in [("eu/05", "written 'eu/5'"), ("eu/+5", "written 'eu/5'"), ("eu", "1 part")]:
        with pytest.raises(Exception, match=why):
            adapter.read("orders", [wrong])
    adapter.close()


def test_sql_composite_keys_reconcile_and_roll_back(sql_url: str, ledger: Ledger) -> None:
    orders_table(sql_url)
    adapter = SqlAdapter("crm", sql_url, {"orders": SqlCollection("orders", ("region", "id"))})
    create_all_then_roll_back(ledger, adapter, "orders")
    adapter.close()


def test_sql_keys_the_database_cannot_write_as_text_are_sorted_on_the_way_out(
    sql_url: str, tmp_path: Path
) -> None:
    days = columns(
        "days",
        sa.Column("region", sa.String, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("n", sa.Integer),
    )
    rows = [(region, date(2026, month, 1)) for month in (1, 10, 2) for region in ("eu", "eu-west")]
    create_table(sql_url, days, [{"day": d, "region": r, "n": 1} for r, d in rows]).dispose()
    adapter = SqlAdapter("crm", sql_url, {"days": SqlCollection("days", ("region", "day"))})
    keys = [key for key, _ in adapter.scan("days")]
    assert keys == sorted(join_key(parts) for parts in rows)
    assert keys[0].startswith("eu-west/")  # not tuple order
    assert adapter.read("days", ["eu/2026-10-01"]) == {"eu/2026-10-01": {"n": 1}}
    ledger = open_ledger(str(tmp_path / "ledger.db"))
    assert len(list(compare_with_target(ledger, adapter, "days"))) == len(
        rows
    )  # unknown to the ledger
    ledger.close()
    adapter.close()


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_file_composite_keys_reconcile_and_roll_back(kind: str, ledger: Ledger, tmp_path) -> None:
    if kind == "csv":
        collection = CsvCollection(key=("region", "id"), columns={"n": "int"})
        adapter: Adapter = CsvAdapter("crm", tmp_path, {"orders": collection})
    else:
        adapter = JsonLinesAdapter(
            "crm", tmp_path, {"orders": JsonLinesCollection(key=("region", "id"))}
        )
    create_all_then_roll_back(ledger, adapter, "orders")


def test_the_ledgers_collection_stream_is_in_key_text_order(ledger: Ledger) -> None:
    keys = [join_key(parts) for parts in KEYS] + ["a b", "a/b/c", "é", "\U0001f600", "~"]
    ledger.record_all(
        [
            Change(Address("crm", "orders", key), "create", values={"n": 1})
            for key in reversed(keys)
        ],
        batch="seed",
    )
    streamed = [state.entity.split("/", 2)[2] for state in ledger.collection("crm", "orders")]
    assert streamed == sorted(keys)
