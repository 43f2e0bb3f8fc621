"""The SQL table adapter on a real SQLite file and a real PostgreSQL database."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from adapter_contract import AdapterContract
from fixtures.tables import create_table

from adapters.sql import SqlAdapter, SqlCollection
from ledger import Address, Change, compare_with_target, open_ledger
from ledger.errors import ConfigurationError
from ledger.ports import Write
from ledger.runs import Run, Target


def contacts_table(metadata):
    return sa.Table(
        "contacts",
        metadata,
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("stage", sa.String, nullable=True),
        sa.Column("score", sa.Integer),
    )


def seeded(url, records, table_factory=contacts_table):
    create_table(url, table_factory, [{"id": k, **v} for k, v in records.items()]).dispose()
    return SqlAdapter("crm", url, {"contacts": SqlCollection("contacts")})


class TestSqlAdapter(AdapterContract):
    @pytest.fixture(autouse=True)
    def _url(self, sql_url):
        self.url = sql_url

    def make_adapter(self, records):
        return seeded(self.url, records)


def test_values_keep_their_types_through_a_round_trip(sql_url):
    def typed(metadata):
        return sa.Table(
            "contacts",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("count", sa.Integer),
            sa.Column("ratio", sa.Float),
            sa.Column("amount", sa.Numeric(20, 6)),
            sa.Column("active", sa.Boolean),
            sa.Column("born", sa.Date),
            sa.Column("seen", sa.DateTime(timezone=True)),
            sa.Column("meta", sa.JSON),
            sa.Column("note", sa.String, nullable=True),
        )

    adapter = seeded(sql_url, {}, typed)
    record = {
        "count": 3,
        "ratio": 0.5,
        "amount": Decimal("12.345600"),
        "active": False,
        "born": date(1990, 5, 17),
        "seen": datetime(2026, 11, 24, 9, 12, tzinfo=UTC),
        "meta": {"tags": ["a", 1, None], "nested": {"x": 1.5}},
        "note": None,
    }
    if sql_url.startswith("sqlite"):  # SQLite's DATETIME keeps no offset: refused, below
        record["seen"] = record["seen"].replace(tzinfo=None)
    (result,) = adapter.write("contacts", [Write("42", "create", record)])
    assert result.outcome == "applied", result.error
    back = adapter.read("contacts", ["42"])["42"]
    assert {k: type(v) for k, v in back.items()} == {k: type(v) for k, v in record.items()}
    assert back["amount"] == record["amount"] and back["meta"] == record["meta"]
    assert back["born"] == record["born"] and back["count"] == 3 and back["note"] is None
    assert back["seen"] == record["seen"]
    assert [key for key, _ in adapter.scan("contacts")] == ["42"]
    adapter.close()


def test_integer_keys_scan_in_key_text_order(sql_url):
    def numbered(metadata):
        return sa.Table(
            "contacts",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("n", sa.Integer),
        )

    adapter = seeded(sql_url, {i: {"n": i} for i in (1, 2, 10, 9)}, numbered)
    assert [key for key, _ in adapter.scan("contacts")] == ["1", "10", "2", "9"]
    assert adapter.read("contacts", ["10"]) == {"10": {"n": 10}}
    adapter.close()


def test_composite_keys(sql_url):
    def regional(metadata):
        return sa.Table(
            "contacts",
            metadata,
            sa.Column("region", sa.String, primary_key=True),
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("n", sa.Integer),
        )

    create_table(sql_url, regional).dispose()
    adapter = SqlAdapter("crm", sql_url, {"contacts": SqlCollection("contacts", ("region", "id"))})
    adapter.write(
        "contacts", [Write("eu%2Fwest/7", "create", {"n": 1}), Write("us/7", "create", {"n": 2})]
    )
    assert dict(adapter.scan("contacts")) == {"eu%2Fwest/7": {"n": 1}, "us/7": {"n": 2}}
    (result,) = adapter.write("contacts", [Write("us/7", "update", {"n": 3}, expected={"n": 2})])
    assert result.outcome == "applied"
    adapter.close()


def test_values_the_table_rejects_fail_with_the_record_field_and_reason(sql_url):
    adapter = seeded(sql_url, {"1": {"name": "Ann", "stage": None, "score": 1}})
    results = adapter.write(
        "contacts",
        [
            Write("1", "update", {"score": "ten"}, expected={"score": 1}),
            Write("1", "update", {"nickname": "A"}, expected={"score": 1}),
            Write("1", "update", {"name": None}, expected={"score": 1}),
            Write("2", "create", {"stage": "lead"}),
            Write("1", "update", {"score": 2}, expected={"score": 1}),
        ],
    )
    assert [r.outcome for r in results] == ["failed", "failed", "failed", "failed", "applied"]
    assert "crm/contacts/1: field 'score' takes int values, not str" in results[0].error
    assert "'nickname' is not a column" in results[1].error
    assert "NOT NULL" in results[2].error or "name" in results[2].error
    assert "refused the create" in results[3].error
    assert adapter.read("contacts", ["1", "2"]) == {
        "1": {"name": "Ann", "stage": None, "score": 2},
        "2": None,
    }
    adapter.close()


def test_unknown_collection_or_table_is_a_configuration_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    seeded(url, {}).close()
    with pytest.raises(ConfigurationError, match="table 'nope' does not exist"):
        SqlAdapter("crm", url, {"contacts": SqlCollection("nope")})
    adapter = SqlAdapter("crm", url, {"contacts": SqlCollection("contacts")})
    with pytest.raises(ConfigurationError, match="no collection 'deals'"):
        adapter.read("deals", ["1"])


def test_a_long_scan_on_sqlite_does_not_hold_the_write_lock(tmp_path):
    """In WAL mode readers never block writers; a scan must not take the write lock either.
    (In rollback-journal mode SQLite itself makes writers wait for any open read.)"""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    adapter = seeded(url, {str(i): {"name": "x", "stage": None, "score": i} for i in range(5)})
    sqlite3.connect(tmp_path / "crm.db").execute("PRAGMA journal_mode=WAL").close()
    scan = adapter.scan("contacts")
    next(scan)  # a scan in progress
    other = SqlAdapter("crm", url, {"contacts": SqlCollection("contacts")})
    (result,) = other.write("contacts", [Write("1", "update", {"score": 9}, expected={"score": 1})])
    assert result.outcome == "applied"
    assert len(list(scan)) == 4
    other.close()
    adapter.close()


def test_json_values_are_stored_and_recorded_as_the_columns_types(sql_url, tmp_path):
    """JSON has no float/int distinction, no Decimal and no dates: a change arriving as JSON is
    converted losslessly to the columns' types, so the ledger records exactly what the table
    holds and reconciliation finds no drift; text that is no date is refused naming the field."""

    def typed(metadata):
        return sa.Table(
            "contacts",
            metadata,
            sa.Column("id", sa.String, primary_key=True),
            sa.Column("ratio", sa.Float),
            sa.Column("amount", sa.Numeric(12, 2)),
            sa.Column("born", sa.Date),
        )

    adapter = seeded(sql_url, {"1": {"ratio": 0.5}}, typed)
    ledger = open_ledger(str(tmp_path / "ledger.db"))
    changes = [
        Change.from_json(
            '{"entity": "crm/contacts/1", "op": "update", "expected": {"ratio": 0.5},'
            ' "set": {"ratio": 2, "amount": 19.99, "born": "1990-05-17"}}'
        ),
        Change.from_json(
            '{"entity": "crm/contacts/2", "op": "create", "set": {"born": "17/05/1990"}}'
        ),
    ]
    with Run(ledger, "sync") as run:
        applied, refused = run.apply(Target(adapter, "contacts"), changes)

    assert (applied.status, refused.status) == ("applied", "failed")
    assert "field 'born' takes date values, not str" in refused.error
    stored = adapter.read("contacts", ["1"])["1"]
    assert stored["ratio"] == 2.0 and type(stored["ratio"]) is float
    assert stored["amount"] == Decimal("19.99") and stored["born"] == date(1990, 5, 17)
    recorded = ledger.state(Address.parse("crm/contacts/1")).fields
    assert {k: (type(v), v) for k, v in recorded.items()} == {
        k: (type(v), v) for k, v in stored.items()
    }
    assert list(compare_with_target(ledger, adapter, "contacts")) == []
    adapter.close()
    ledger.close()
