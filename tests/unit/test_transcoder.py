"""The orjson transcoder gives back exactly what it was given, whatever the shape."""

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import InvalidValue
from ledger.transcoder import OrjsonTranscoder

transcoder = OrjsonTranscoder()

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**64, max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary()
    | st.uuids()
    | st.dates()
    | st.times()
    | st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]))
    | st.datetimes()
)
keys = st.sampled_from(["_type_", "_data_", "a", "b"]) | st.text(max_size=5)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(keys, inner, max_size=4)
    ),
    max_leaves=20,
)


def exactly(a, b):
    """Equal and of the same type at every level (so 1 != 1.0 != True)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            exactly(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            exactly(x, y)
    elif isinstance(a, Decimal):
        assert a.as_tuple() == b.as_tuple()
    else:
        assert a == b
        if isinstance(a, datetime | time):
            assert a.utcoffset() == b.utcoffset()


@given(values)
def test_any_value_round_trips_exactly(value):
    exactly(transcoder.decode(transcoder.encode(value)), value)


def test_a_stored_dict_that_looks_like_a_tag_is_not_mistaken_for_one():
    lookalike = {"_type_": "uuid_hex", "_data_": "6f1c1d1e8f554f5b9a510b7e4c3d2a10"}
    assert transcoder.decode(transcoder.encode(lookalike)) == lookalike


def test_library_types_are_not_flattened_to_strings():
    value = {
        "id": UUID("6f1c1d1e-8f55-4f5b-9a51-0b7e4c3d2a10"),
        "at": datetime(2026, 11, 24, 9, 12, tzinfo=UTC),
        "day": date(2026, 11, 24),
        "amount": Decimal("10.50"),
        "pair": (1, "a"),
    }
    exactly(transcoder.decode(transcoder.encode(value)), value)


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_refused_not_nulled(number):
    with pytest.raises(InvalidValue):
        transcoder.encode({"score": number})


def test_unknown_types_are_refused_with_the_library_message():
    with pytest.raises(TypeError, match="Please define and register"):
        transcoder.encode({"x": object()})


def test_json_null_and_sql_null_are_stored_apart():
    from ledger.values import JSON_NULL

    transcoder = OrjsonTranscoder()
    stored = transcoder.decode(
        transcoder.encode({"sql": None, "json": JSON_NULL, "in": [JSON_NULL]})
    )
    assert stored["sql"] is None
    assert stored["json"] is JSON_NULL
    assert stored["in"] == [JSON_NULL]


@given(
    st.dictionaries(st.text(max_size=5), values, max_size=3),
    st.dictionaries(keys, values, max_size=3),
    st.datetimes(timezones=st.just(UTC)),
    scalars,
)
def test_decoding_some_fields_gives_them_exactly_whatever_the_other_fields_hold(
    before, after, timestamp, other
):
    """The read of a collection decodes just operation/before/after of each event's state; a
    state whose only tag is in a field not asked for (its timestamp) skips walking them."""
    state = {"timestamp": timestamp, "operation": "update", "before": before, "after": after}
    state["other"] = other
    data = transcoder.encode(state)
    fields = transcoder.decode_fields(data, ("operation", "before", "after"))
    exactly(fields, ("update", before, after))
    exactly(transcoder.decode_fields(data, ("timestamp", "after")), (timestamp, after))
