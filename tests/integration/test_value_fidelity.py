"""Value fidelity through the SQL adapter, every column type of both engines (a property).

For a column and two values A then B: create a record holding A, update it to B, read the
state as of before and after the update, roll the update back, reconcile. Each step gives
back exactly the values (`same`: types included; a value normalized to its column's type
counts as what was sent) — or the value is refused before anything is written, naming the
field: no row, no recorded action, no pending intent.

Values: integers at and beyond every range (±2**15, ±2**31, ±2**63 and more), floats (NaN,
subnormal, ±0), decimals of many digits and exponents, dates, datetimes and times with and
without UTC offsets, text with any character (NUL, control, non-BMP, lone surrogates),
bytes, and JSON documents: SQL NULL, the document null, nesting, big integers, decimals,
and documents shaped like the ledger's own type tags.
"""

from __future__ import annotations

import itertools
from datetime import timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql

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
from ledger.errors import LedgerError, NotFound
from ledger.points import Point
from ledger.runs import Run, Target
from ledger.values import JSON_NULL, same

EDGES = [2**n + d for n in (15, 31, 53, 63, 64, 80) for d in (-1, 0, 1)]
integers = st.one_of(
    st.integers(-1000, 1000),
    st.sampled_from(EDGES + [-e for e in EDGES]),
    st.integers(),
)
offsets = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60 - 59, 23 * 60 + 59)
)
moments = st.one_of(st.datetimes(), st.datetimes(timezones=offsets))
clocks = st.one_of(st.times(), st.times(timezones=offsets))
many_digits = st.from_regex(r"-?[0-9]{1,32}(\.[0-9]{1,20})?(E[+-]?[0-9]{1,2})?", fullmatch=True)
decimals = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False), st.builds(Decimal, many_digits)
)
texts = st.one_of(st.text(), st.text(st.characters(exclude_categories=()), max_size=4))
TAGS = [
    {"_type_": "decimal", "_data_": "1"},
    {"_type_": "json_null", "_data_": None},
    {"$date": "x"},
    {"$jsonnull": True},
    {"$absent": True},
    {"$object": {"$int": "1"}},
]
leaves = st.one_of(
    st.none(),
    st.booleans(),
    integers,
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
    st.builds(Decimal, many_digits),
    st.sampled_from(TAGS),
)
documents = st.one_of(
    st.just(JSON_NULL),
    st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
        max_leaves=8,
    ),
)
COLUMNS: dict[str, tuple[Any, st.SearchStrategy[Any]]] = {
    "small": (sa.SmallInteger, integers),
    "whole": (sa.Integer, integers),
    "big": (sa.BigInteger, integers),
    "ratio": (sa.Float, st.one_of(st.floats(), integers)),
    "single": (sa.REAL, st.floats()),
    "amount": (sa.Numeric(30, 10), st.one_of(decimals, integers)),
    "exact": (sa.Numeric, decimals),
    "flag": (sa.Boolean, st.booleans()),
    "day": (sa.Date, st.dates()),
    "moment": (sa.DateTime, moments),
    "moment_tz": (sa.DateTime(timezone=True), moments),
    "clock": (sa.Time, clocks),
    "note": (sa.Text, texts),
    "code": (sa.String(8), texts),
    "blob": (sa.LargeBinary, st.binary()),
    "doc": (sa.JSON(none_as_null=True), documents),
    "docb": (postgresql.JSONB(none_as_null=True), documents),
}
KEYS = itertools.count()


@pytest.fixture
def target(sql_url: str):
    engine = sa.create_engine(sql_url)
    metadata = sa.MetaData()
    sqlite = sql_url.startswith("sqlite")
    columns = [
        sa.Column(name, kind)
        for name, (kind, _) in COLUMNS.items()
        if not (sqlite and name == "docb")
    ]
    sa.Table("values", metadata, sa.Column("id", sa.String(20), primary_key=True), *columns)
    metadata.create_all(engine)
    engine.dispose()
    adapter = SqlAdapter("crm", sql_url, {"values": SqlCollection("values")})
    yield Target(adapter, "values")
    adapter.close()


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, Any, Any]:
    field = draw(st.sampled_from(sorted(COLUMNS)))
    values = st.one_of(st.none(), COLUMNS[field][1])
    return field, draw(values), draw(values)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_values_come_back_exactly_or_are_refused_naming_the_field(
    target: Target, ledger: Ledger, case: tuple[str, Any, Any]
) -> None:
    field, a, b = case
    adapter = target.adapter
    if field not in adapter.table("values").c:
        return  # JSONB: PostgreSQL only
    address = Address("crm", "values", f"k{next(KEYS)}")
    key = address.key

    def recorded_batches() -> list[str]:
        try:
            return [action.batch for action in ledger.history(address)]
        except NotFound:
            return []

    def run(batch: str, operation: str, value: Any) -> bool:
        """Apply one change; True if applied, False if refused as the property allows."""
        before = adapter.read("values", [key])[key]
        try:
            change = Change(address, operation, values={field: value})
            with Run(ledger, batch) as writing:
                (outcome,) = writing.apply(target, [change])
        except LedgerError as refused:  # refused before anything was written
            event(f"{field}: refused by the ledger")
            assert field in str(refused), refused
            assert adapter.read("values", [key])[key] == before
            return False
        if outcome.status == "failed":
            event(f"{field}: refused by the adapter")
            assert f"field {field!r}" in (outcome.error or ""), outcome.error
            assert ledger.index.pending(batch) == []
            assert same(adapter.read("values", [key])[key], before)
            assert batch not in recorded_batches()
            return False
        assert outcome.status == "applied", outcome
        return True

    a = adapter.normalize("values", {field: a})[field]
    if not run(f"seed-{key}", "create", a):
        return
    assert same(adapter.read("values", [key])[key][field], a)
    position = ledger.recorder.max_notification_id()

    b = adapter.normalize("values", {field: b})[field]
    if not run(f"edit-{key}", "update", b):
        return
    assert same(adapter.read("values", [key])[key][field], b)
    assert same(ledger.state(address).fields[field], b)
    assert same(ledger.state(address, Point.parse(f"position:{position}")).fields[field], a)
    assert list(compare_with_target(ledger, adapter, "values", tracked_only=True)) == []

    event(f"{field}: applied, rolled back")
    rollback = plan_rollback(ledger, RollbackScope(batches=(f"edit-{key}",)), {"crm": adapter})
    report = apply_rollback(ledger, rollback, {"crm": adapter})
    assert report.mismatches == []
    assert same(adapter.read("values", [key])[key][field], a)
    assert same(ledger.state(address).fields[field], a)
    assert list(compare_with_target(ledger, adapter, "values", tracked_only=True)) == []
