"""External values are refused rather than altered, and JSON input is read exactly."""

from decimal import Decimal

import pytest

from ledger.errors import InvalidValue
from ledger.values import MAX_DEPTH, check_value, parse_json, same


def test_duplicate_keys_are_refused_not_collapsed():
    with pytest.raises(InvalidValue, match="key 'stage' appears twice"):
        parse_json('{"stage": "lead", "stage": "customer"}')


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_refused(literal):
    with pytest.raises(InvalidValue, match=literal):
        parse_json(f'{{"score": {literal}}}')


def test_big_integers_and_long_decimals_keep_every_digit():
    value = parse_json('{"big": 123456789012345678901234567890, "money": 1234567890.123456789}')
    assert value["big"] == 123456789012345678901234567890
    assert value["money"] == Decimal("1234567890.123456789")
    assert type(value["money"]) is Decimal


def test_plain_fractions_stay_floats():
    assert parse_json('{"x": 0.1, "y": 2.5e-3}') == {"x": 0.1, "y": 0.0025}


def test_nesting_beyond_the_bound_is_refused():
    deep = "[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2)
    with pytest.raises(InvalidValue, match="nested deeper"):
        parse_json(deep)


def test_absurdly_deep_input_is_refused_without_crashing():
    with pytest.raises(InvalidValue, match="nested"):
        parse_json("[" * 100_000 + "]" * 100_000)


def test_oversized_values_are_refused():
    with pytest.raises(InvalidValue, match="larger than"):
        check_value({"blob": "x" * (2 << 20)}, "set")


def test_not_json_names_the_column():
    with pytest.raises(InvalidValue, match=r"not valid JSON.*column"):
        parse_json('{"a": }')


@pytest.mark.parametrize(
    "value, message",
    [
        (float("nan"), "set.score is nan"),
        ({1: "x"}, "key 1 of type int"),
        ({1, 2}, "is a set"),
    ],
)
def test_values_that_cannot_be_stored_exactly_name_where_they_are(value, message):
    with pytest.raises(InvalidValue, match=message):
        check_value({"score": value}, "set")


def test_same_distinguishes_types_that_python_calls_equal():
    assert not same(1, 1.0)
    assert not same(1, True)
    assert not same({"a": 1}, {"a": 1.0})
    assert same({"a": [1, "x", None]}, {"a": [1, "x", None]})


def test_json_input_that_is_not_utf8_is_refused_naming_it():
    import pytest

    from ledger.errors import InvalidValue
    from ledger.values import parse_json

    with pytest.raises(InvalidValue, match=r"line 3 is not valid UTF-8 \(byte 10\)"):
        parse_json(b'{"name": "\xff"}', where="line 3")


@pytest.mark.parametrize(
    "value, where",
    [
        ("\ud800", "set"),
        ({"doc": "a\udfffb"}, "set.doc"),
        ({"doc": ["ok", {"x": "\ud83d"}]}, "set.doc[1].x"),
        ({"k\ud800": 1}, "set"),
    ],
)
def test_text_with_a_lone_surrogate_is_refused_naming_where(value, where):
    """Found by the value-fidelity property: such text passed the check and then broke the
    fingerprint with a TypeError; no UTF-8 store could hold it anyway."""
    with pytest.raises(InvalidValue, match="not valid Unicode") as refused:
        check_value(value, "set")
    assert refused.value.field == where


def test_a_change_carrying_a_lone_surrogate_is_refused_before_anything_is_hashed():
    from ledger import Address, Change

    with pytest.raises(InvalidValue, match=r"set\.doc .*U\+D800 at character 0"):
        Change(Address("crm", "values", "1"), "update", values={"doc": "\ud800"})
