"""SQL NULL and the JSON document null in a JSON column are two values (None and JSON_NULL):
kept apart in reads, writes, before-images, as-of views, rollback, verification and
reconcile, on SQLite (JSON) and PostgreSQL (JSON and JSONB), and in CSV json columns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from adapters.files import CsvAdapter, CsvCollection
from adapters.sql import SqlAdapter, SqlCollection
from ledger import (
    Address,
    Change,
    Ledger,
    RollbackScope,
    apply_rollback,
    compare_with_target,
    plan_rollback,
)
from ledger.ports import Write
from ledger.runs import Run, Target
from ledger.values import JSON_NULL, same

DOCUMENT = {"tags": ["a", None], "n": 1}


@pytest.fixture(params=["json", "jsonb"])
def crm(request: pytest.FixtureRequest, sql_url: str):
    """A `contacts` table whose `meta` column is JSON (or JSONB): 1 holds SQL NULL, 2 the
    document null, 3 a document."""
    if request.param == "jsonb" and sql_url.startswith("sqlite"):
        pytest.skip("SQLite has no JSONB")
    kind = postgresql.JSONB if request.param == "jsonb" else sa.JSON
    engine = sa.create_engine(sql_url)
    metadata = sa.MetaData()
    table = sa.Table(
        "contacts",
        metadata,
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("meta", kind(none_as_null=True)),
    )
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(table),
            [
                {"id": "1", "meta": None},
                {"id": "2", "meta": sa.JSON.NULL},
                {"id": "3", "meta": DOCUMENT},
            ],
        )
    adapter = SqlAdapter("crm", sql_url, {"contacts": SqlCollection("contacts")})
    yield adapter, engine
    adapter.close()
    engine.dispose()


def stored(engine: sa.Engine) -> dict[str, str | None]:
    """What each row's `meta` holds, as the database says: SQL NULL (None) or document text."""
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT id, CAST(meta AS TEXT) FROM contacts"))
        return {
            key: None if text is None else json.dumps(json.loads(text), sort_keys=True)
            for key, text in rows
        }


def test_reads_keep_sql_null_and_the_document_null_apart(crm) -> None:
    adapter, _ = crm
    assert adapter.read("contacts", ["1", "2", "3"]) == {
        "1": {"meta": None},
        "2": {"meta": JSON_NULL},
        "3": {"meta": DOCUMENT},
    }
    assert dict(adapter.scan("contacts"))["2"]["meta"] is JSON_NULL


def test_a_write_sets_either_and_expects_either(crm) -> None:
    adapter, engine = crm
    results = adapter.write(
        "contacts",
        [
            Write("1", "update", {"meta": JSON_NULL}, expected={"meta": None}),
            Write("2", "update", {"meta": None}, expected={"meta": JSON_NULL}),
            Write("3", "update", {"meta": None}, expected={"meta": JSON_NULL}),
        ],
    )
    assert [r.outcome for r in results] == ["applied", "applied", "stale"]
    assert stored(engine) == {"1": "null", "2": None, "3": json.dumps(DOCUMENT, sort_keys=True)}


def test_a_rollback_restores_the_null_the_record_held(crm, ledger: Ledger) -> None:
    adapter, engine = crm
    target = Target(adapter, "contacts")
    with Run(ledger, "clear") as run:
        outcomes = run.apply(
            target,
            [
                Change(Address("crm", "contacts", "1"), "update", values={"meta": JSON_NULL}),
                Change(Address("crm", "contacts", "2"), "update", values={"meta": None}),
                Change(Address("crm", "contacts", "3"), "update", values={"meta": JSON_NULL}),
            ],
        )
    assert {o.status for o in outcomes} == {"applied"}
    assert stored(engine) == {"1": "null", "2": None, "3": "null"}
    assert list(compare_with_target(ledger, adapter, "contacts")) == []
    befores = {
        key: action.before["meta"]
        for key in "123"
        for action in ledger.history(Address("crm", "contacts", key))
        if action.batch == "clear"
    }
    assert same(befores, {"1": None, "2": JSON_NULL, "3": DOCUMENT})  # the before-images
    as_of = {s.entity[-1]: s.fields["meta"] for s in ledger.collection("crm", "contacts")}
    assert same(as_of, {"1": JSON_NULL, "2": None, "3": JSON_NULL})

    rollback = plan_rollback(ledger, RollbackScope(batches=("clear",)), {"crm": adapter})
    report = apply_rollback(ledger, rollback, {"crm": adapter})
    assert report.mismatches == []
    assert stored(engine) == {"1": None, "2": "null", "3": json.dumps(DOCUMENT, sort_keys=True)}
    back = {key: record["meta"] for key, record in adapter.scan("contacts")}
    assert same(back, {"1": None, "2": JSON_NULL, "3": DOCUMENT})
    assert list(compare_with_target(ledger, adapter, "contacts")) == []
    assert ledger.state(Address("crm", "contacts", "2")).fields["meta"] is JSON_NULL


def test_reconcile_tells_sql_null_from_the_document_null(crm, ledger: Ledger) -> None:
    adapter, engine = crm
    with Run(ledger, "set") as run:
        run.apply(
            Target(adapter, "contacts"),
            [Change(Address("crm", "contacts", "1"), "update", values={"meta": JSON_NULL})],
        )
    with engine.begin() as connection:  # someone outside writes SQL NULL back
        connection.execute(sa.text("UPDATE contacts SET meta = NULL WHERE id = '1'"))
    (drift,) = compare_with_target(
        ledger, adapter, "contacts", tracked_only=True, null_is_absent=True
    )
    assert drift.key == "1" and drift.fields == {"meta": (JSON_NULL, None)}


def test_a_non_json_column_refuses_the_document_null(sql_url: str) -> None:
    engine = sa.create_engine(sql_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (id VARCHAR(9) PRIMARY KEY, note TEXT)")
        connection.exec_driver_sql("INSERT INTO t VALUES ('1', NULL)")
    adapter = SqlAdapter("crm", sql_url, {"t": SqlCollection("t")})
    (result,) = adapter.write("t", [Write("1", "update", {"note": JSON_NULL})])
    assert result.outcome == "failed" and "field 'note' is the JSON document null" in result.error
    adapter.close()
    engine.dispose()


def test_the_cli_sets_sql_null_with_null_and_the_document_null_with_its_tag(
    workspace: tuple[Path, Path, dict[str, str]],
) -> None:
    folder, crm, env = workspace
    engine = sa.create_engine(f"sqlite:///{crm}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE contacts (id TEXT PRIMARY KEY, meta JSON)")
        connection.exec_driver_sql("INSERT INTO contacts VALUES ('1', 'null'), ('2', NULL)")
    changes = folder / "changes.jsonl"
    changes.write_text(
        '{"entity": "crm/contacts/1", "op": "update", "set": {"meta": null}}\n'
        '{"entity": "crm/contacts/2", "op": "update", "set": {"meta": {"$jsonnull": true}}}\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "ledger", "apply", str(changes), "--system", "crm", "--batch", "b"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert stored(engine) == {"1": None, "2": "null"}
    engine.dispose()


def test_a_csv_json_column_keeps_an_empty_cell_and_a_null_cell_apart(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("id,meta\r\n1,\r\n2,null\r\n")
    adapter = CsvAdapter("s", tmp_path, {"c": CsvCollection(columns={"meta": "json"})})
    assert dict(adapter.scan("c")) == {"1": {"meta": None}, "2": {"meta": JSON_NULL}}
    adapter.write(
        "c",
        [
            Write("1", "update", {"meta": JSON_NULL}, expected={"meta": None}),
            Write("2", "update", {"meta": None}, expected={"meta": JSON_NULL}),
        ],
    )
    assert (tmp_path / "c.csv").read_bytes() == b"id,meta\r\n1,null\r\n2,\r\n"


def test_a_number_document_in_sqlite_is_refused_unless_it_comes_back_exactly(tmp_path) -> None:
    """SQLite gives a column declared JSON NUMERIC affinity: the document 4.478070691203475e-289
    would be stored as a REAL and come back as text rounded to 15 digits (found by the value
    fidelity property); 1.0 would come back as the integer 1."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE c (id TEXT PRIMARY KEY, meta JSON)")
        connection.exec_driver_sql("INSERT INTO c VALUES ('1', NULL), ('2', 0.1)")
    adapter = SqlAdapter("crm", url, {"c": SqlCollection("c")})
    assert adapter.read("c", ["2"])["2"]["meta"] == 0.1  # a REAL stored by another writer
    refused, exact = adapter.write(
        "c",
        [
            Write("1", "update", {"meta": 4.478070691203475e-289}),
            Write("2", "update", {"meta": 12345}),
        ],
    )
    assert refused.outcome == "failed" and "field 'meta' is the number document" in refused.error
    assert exact.outcome == "applied"
    assert same(adapter.read("c", ["1", "2"]), {"1": {"meta": None}, "2": {"meta": 12345}})
    adapter.close()
    engine.dispose()
