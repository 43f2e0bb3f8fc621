"""The edge encoding: whatever `--json` prints reads back as the same value, type included."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import Change, InvalidValue
from ledger.encoding import decode_value, encode_value, parse_value
from ledger.values import ABSENT, JSON_NULL, same

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.text(),
    st.integers(),  # beyond 64 bits too
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.dates(),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.times(),
    st.uuids(),
    st.binary(),
    st.just(JSON_NULL),
)
keys = st.text() | st.sampled_from(["$date", "$object", "$absent", "_type_", "_data_", "$x"])
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


@given(values)
def test_every_value_prints_as_json_and_reads_back_the_same(value: object) -> None:
    printed = orjson.dumps(encode_value(value))
    assert same(parse_value(printed), value)


def test_types_that_json_has_not_are_tagged() -> None:
    eastern = timezone(timedelta(hours=-5))
    assert encode_value(Decimal("1.10")) == {"$decimal": "1.10"}
    assert encode_value(2**70) == {"$int": str(2**70)}
    assert encode_value(datetime(2026, 1, 2, 3, 4, tzinfo=eastern)) == {
        "$datetime": "2026-01-02T03:04:00-05:00"
    }
    assert encode_value(date(2026, 1, 2)) == {"$date": "2026-01-02"}
    assert encode_value(time(9, 30)) == {"$time": "09:30:00"}
    assert encode_value(JSON_NULL) == {"$jsonnull": True}
    assert encode_value(None) is None
    assert encode_value(ABSENT) == {"$absent": True}
    assert encode_value({"$date": "x"}) == {"$object": {"$date": "x"}}


def test_sql_null_and_json_null_read_back_apart() -> None:
    assert parse_value(b"null") is None
    assert parse_value(b'{"$jsonnull": true}') is JSON_NULL


def test_a_misspelt_tag_is_refused_naming_where() -> None:
    with pytest.raises(InvalidValue, match=r"set.amount: '\$decimall' is not a value tag"):
        decode_value({"$decimall": "1"}, "set.amount")


def test_a_malformed_tagged_value_is_refused() -> None:
    with pytest.raises(InvalidValue, match=r"'nope' is not a valid \$date"):
        decode_value({"$date": "nope"})


def test_an_import_line_carries_typed_values() -> None:
    change = Change.from_json(
        b'{"entity": "crm/deals/1", "op": "update", "set": {"amount": {"$decimal": "10.50"},'
        b' "closes": {"$date": "2026-03-01"}, "meta": {"$jsonnull": true}},'
        b' "before": {"amount": {"$decimal": "9.00"}}}'
    )
    assert same(change.values["amount"], Decimal("10.50"))
    assert change.values["closes"] == date(2026, 3, 1)
    assert change.values["meta"] is JSON_NULL
    assert same(change.before, {"amount": Decimal("9.00")})


def test_uuid_and_utc_round_trip() -> None:
    uid = UUID(int=7)
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_value(orjson.dumps(encode_value([uid, moment]))) == [uid, moment]
