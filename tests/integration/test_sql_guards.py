"""What the SQL adapter refuses before anything is written, on SQLite and PostgreSQL: a key
that is not the table's, a write that would change more than one row, a value its column
cannot hold exactly, a SQLite file that does not exist."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from fixtures.tables import columns, create_table
from fixtures.tables import orders as orders_table

from adapters.sql import SqlAdapter, SqlCollection
from ledger import Address, Change, Run, Target, open_ledger
from ledger.errors import ConfigurationError
from ledger.ports import Write


def create(url: str, *of: sa.Column, rows: list[dict] = (), extra: str = "") -> sa.Engine:
    return create_table(url, columns("orders", *of), rows, extra=extra)


def orders(url: str, rows: list[dict] = ()) -> sa.Engine:
    return create_table(url, orders_table, rows)


def all_rows(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as connection:
        return sorted(connection.exec_driver_sql("SELECT region, id, n FROM orders").all())


# A declared key must be the table's --------------------------------------------------------


def test_a_key_that_is_not_the_tables_is_refused_when_the_system_is_opened(sql_url: str) -> None:
    engine = orders(sql_url, [{"region": r, "id": 5, "n": 0} for r in ("eu", "us", "apac")])
    with pytest.raises(ConfigurationError) as refused:
        SqlAdapter("shop", sql_url, {"orders": SqlCollection("orders")})  # key defaults to id
    message = str(refused.value)
    assert "shop/orders" in message and "table 'orders'" in message
    assert "key (id)" in message and "primary key (region, id)" in message
    assert all_rows(engine) == [("apac", 5, 0), ("eu", 5, 0), ("us", 5, 0)]
    engine.dispose()


@pytest.mark.parametrize(
    "index, accepted",
    [
        ("CREATE UNIQUE INDEX by_code ON orders (code)", True),
        ("CREATE UNIQUE INDEX by_code ON orders (code, n)", False),  # not within the key
        ("CREATE UNIQUE INDEX by_code ON orders (code) WHERE n > 0", False),  # partial
        ("CREATE UNIQUE INDEX by_code ON orders (maybe)", False),  # may be NULL
        ("CREATE INDEX by_code ON orders (code)", False),  # not unique
    ],
)
def test_a_unique_index_of_not_null_columns_is_a_key(sql_url: str, index: str, accepted: bool):
    engine = create(
        sql_url,
        sa.Column("rowid_", sa.Integer, primary_key=True),
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("maybe", sa.String(20), nullable=True),
        sa.Column("n", sa.Integer),
        extra=index,
    )
    key = ("maybe",) if "maybe" in index else ("code",)
    if accepted:
        SqlAdapter("shop", sql_url, {"orders": SqlCollection("orders", key)}).close()
    else:
        with pytest.raises(ConfigurationError, match=r"is not a unique key of table 'orders'"):
            SqlAdapter("shop", sql_url, {"orders": SqlCollection("orders", key)})
    engine.dispose()


# A write changes exactly one row ------------------------------------------------------------


def test_a_write_that_would_change_several_rows_is_refused_and_rolled_back(sql_url: str) -> None:
    """The key was unique when the system was opened; then someone dropped the index and
    duplicated a row. The row count, checked in the write's transaction, catches it."""
    engine = create(
        sql_url,
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("n", sa.Integer),
        rows=[{"id": 5, "n": 0}, {"id": 6, "n": 0}, {"id": 7, "n": 0}],
        extra="CREATE UNIQUE INDEX by_id ON orders (id)",
    )
    adapter = SqlAdapter("shop", sql_url, {"orders": SqlCollection("orders")})
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP INDEX by_id")
        connection.exec_driver_sql("INSERT INTO orders VALUES (5, 0), (5, 0), (7, 0)")
    results = adapter.write(
        "orders",
        [
            Write("5", "update", {"n": 1}, expected={"n": 0}),
            Write("6", "update", {"n": 1}, expected={"n": 0}),
            Write("7", "delete", expected={"n": 0}),
        ],
    )
    assert [r.outcome for r in results] == ["failed", "applied", "failed"]
    assert "would have changed 3 rows of orders, not 1" in (results[0].error or "")
    assert "would have changed 2 rows" in (results[2].error or "")
    with engine.connect() as connection:
        rows = sorted(connection.exec_driver_sql("SELECT id, n FROM orders").all())
    assert rows == [(5, 0), (5, 0), (5, 0), (6, 1), (7, 0), (7, 0)]
    adapter.close()
    engine.dispose()


# Values the column cannot hold exactly ------------------------------------------------------


def typed_table(url: str) -> sa.Engine:
    return create(
        url,
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("small", sa.SmallInteger),
        sa.Column("whole", sa.Integer),
        sa.Column("big", sa.BigInteger),
        sa.Column("ratio", sa.Float),
        sa.Column("single", sa.REAL),
        sa.Column("amount", sa.Numeric(5, 2)),
        sa.Column("code", sa.String(3)),
        sa.Column("fixed", sa.CHAR(3)),
        rows=[{"id": "1"}],
    )


SQLITE_AND_POSTGRES = [  # field, value, refused on SQLite, refused on PostgreSQL
    ("small", 2**15, False, True),
    ("whole", 2**31, False, True),
    ("whole", 2**63, True, True),
    ("big", 2**63 - 1, False, False),
    ("big", -(2**63) - 1, True, True),
    ("big", 2**70, True, True),
    ("ratio", 2**53 + 1, True, True),
    ("single", 0.1, False, True),
    ("single", 0.5, False, False),
    ("amount", Decimal("1.234"), True, True),
    ("amount", Decimal("1234.5"), False, True),
    ("amount", Decimal("999.99"), False, False),
    ("code", "abcd", False, True),
    ("code", "a\x00b", False, True),
    ("fixed", "ab", False, True),
    ("fixed", "abc", False, False),
]


@pytest.mark.parametrize("field, value, on_sqlite, on_postgres", SQLITE_AND_POSTGRES)
def test_a_value_the_column_cannot_hold_exactly_is_refused_naming_the_field(
    sql_url: str, field: str, value: object, on_sqlite: bool, on_postgres: bool
) -> None:
    engine = typed_table(sql_url)
    adapter = SqlAdapter("shop", sql_url, {"orders": SqlCollection("orders")})
    (result,) = adapter.write("orders", [Write("1", "update", {field: value})])
    refused = on_sqlite if sql_url.startswith("sqlite") else on_postgres
    if refused:
        assert result.outcome == "failed" and result.field == field
        assert f"shop/orders/1: field {field!r}" in (result.error or "")
        assert adapter.read("orders", ["1"])["1"][field] is None
    else:
        assert result.outcome == "applied", result.error
        back = adapter.read("orders", ["1"])["1"][field]
        assert back == value and type(back) is type(value)
    adapter.close()
    engine.dispose()


def test_an_integer_beyond_the_column_fails_in_a_run_without_a_traceback_or_pending_intent(
    sql_url: str, tmp_path: Path
) -> None:
    engine = typed_table(sql_url)
    adapter = SqlAdapter("shop", sql_url, {"orders": SqlCollection("orders")})
    ledger = open_ledger(str(tmp_path / "ledger.db"))
    beyond = 2**63
    changes = [
        Change(Address("shop", "orders", "1"), "update", values={"big": beyond}),
        Change(Address("shop", "orders", "1"), "update", values={"whole": 7}),
    ]
    with Run(ledger, "import") as run:
        refused, applied = run.apply(Target(adapter, "orders"), changes)
    assert (refused.status, applied.status) == ("failed", "applied")
    assert "field 'big'" in (refused.error or "") and "range" in (refused.error or "")
    assert ledger.index.pending("import") == []
    assert adapter.read("orders", ["1"])["1"]["big"] is None
    ledger.close()
    adapter.close()
    engine.dispose()


# A SQLite target that does not exist ---------------------------------------------------------


def test_a_sqlite_target_that_does_not_exist_is_refused_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "crm.db"
    with pytest.raises(ConfigurationError, match=f"SQLite database {missing} does not exist"):
        SqlAdapter("crm", f"sqlite:///{missing}", {"contacts": SqlCollection("contacts")})
    assert not missing.exists()


def test_the_cli_refuses_a_missing_sqlite_target_in_one_line(workspace) -> None:
    folder, crm, env = workspace
    changes = folder / "changes.jsonl"
    changes.write_text('{"entity": "crm/contacts/1", "op": "create", "set": {"name": "Ann"}}\n')
    done = subprocess.run(
        [sys.executable, "-m", "ledger", "apply", str(changes), "--system", "crm", "--batch", "b1"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert str(crm) in done.stderr and "SQLite database" in done.stderr
    assert "Traceback" not in done.stderr
    assert not crm.exists()
