"""The pieces every adapter shares: the one JSON fitness check (`adapters.jsontext.exact_json`),
`ledger.ports.holds` (does a record already show a write) and `ledger.ports.key_text`."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.jsontext import NotJson, exact_json, json_text
from ledger import Address, Change
from ledger.ports import Write, holds, key_text
from ledger.values import ABSENT, JSON_NULL, parse_json, same

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_every_plain_json_value_reads_back_as_itself(value: Any) -> None:
    assert same(parse_json(exact_json(value)), value)


def test_a_decimal_with_more_digits_than_a_float_reads_back_exactly() -> None:
    exact = Decimal("0.10000000000000000000001")
    assert exact_json({"amount": exact}) == '{"amount": 0.10000000000000000000001}'


@pytest.mark.parametrize(
    ("value", "field", "reason"),
    [
        ({"odd": Decimal("1.5")}, "odd", "read back from JSON as 1.5"),
        ({"meta": {"since": date(2024, 1, 2)}}, "meta.since", "holds a date"),
        ({"tags": ["a", float("inf")]}, "tags[1]", "no NaN or infinity"),
        ({"meta": {1: "x"}}, "meta", "the key 1 is not text"),
        ({"blob": b"x"}, "blob", "JSON has no bytes"),
        ({"pair": (1, 2)}, "pair", "JSON has no tuple"),
        ({"doc": JSON_NULL}, "doc", "document null"),
        ({"name": "\udc80"}, "", "lone surrogate"),
    ],
)
def test_a_value_json_cannot_carry_is_refused_naming_its_field(
    value: Any, field: str, reason: str
) -> None:
    with pytest.raises(NotJson) as refused:
        exact_json(value)
    assert refused.value.field == field
    assert reason in str(refused.value)
    if field:
        assert f"field {field!r}" in str(refused.value)


def test_decimals_can_be_refused_for_a_system_that_cannot_send_them() -> None:
    exact = Decimal("0.10000000000000000000001")
    with pytest.raises(NotJson, match="'score' holds a Decimal"):
        exact_json({"score": exact}, decimals=False)
    assert json_text({"score": 1.5}, decimals=False) == '{"score": 1.5}'


def test_a_document_beyond_the_parse_limits_is_refused() -> None:
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    with pytest.raises(NotJson, match="nested"):
        exact_json(deep)


# holds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("write", "record", "expected"),
    [
        (Write("1", "delete"), None, True),
        (Write("1", "delete"), {"a": 1}, False),
        (Write("1", "create", {"a": 1}), None, False),
        (Write("1", "create", {"a": 1}), {"a": 1, "b": 2}, True),
        (Write("1", "update", {"a": 1}), {"a": 1.0}, False),  # same type, not just equal
        (Write("1", "update", {"a": True}), {"a": 1}, False),
        (Write("1", "update", {"a": None}), {}, False),  # null is not absent
        (Write("1", "update", {"a": ABSENT}), {}, True),
        (Write("1", "update", unset=("b",)), {"a": 1, "b": 2}, False),
        (Write("1", "update", {"a": 1}, unset=("b",)), {"a": 1}, True),
        (Write("1", "update", {"a": 1}, expected={"a": 0}), {"a": 1}, True),  # expected ignored
    ],
)
def test_holds_says_whether_a_record_already_shows_a_write(
    write: Write, record: dict[str, Any] | None, expected: bool
) -> None:
    assert holds(write, record) is expected


def test_holds_takes_the_ledgers_change_as_well_as_a_write() -> None:
    change = Change(Address("crm", "contacts", "1"), "update", {"a": 1}, unset=("b",))
    assert holds(change, {"a": 1})
    assert not holds(change, {"a": 1, "b": None})


def test_key_text_is_text_as_is_and_an_integer_as_its_digits() -> None:
    assert [key_text(v) for v in ("05", 5, -3, 5.0, True, None)] == [
        "05",
        "5",
        "-3",
        None,
        None,
        None,
    ]
