"""Record keys: one text per record, however it is spelled, and one order for every stream."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.keysort import sorted_by_key
from ledger import Address
from ledger.errors import AdapterError
from ledger.keys import canonical_key, in_key_order, join_key, merge_by_key, split_key

PARTS = st.lists(st.text(), min_size=2, max_size=4)
AWKWARD = ["eu", "eu-west", "a/b", "50%", "%41", "o'brien", "with space", "Zürich", "日本", "-1"]


@given(PARTS)
def test_a_composite_key_splits_back_into_its_parts(parts: list[str]) -> None:
    key = join_key(parts)
    assert split_key(key, len(parts)) == parts
    assert canonical_key(key) == key


@given(st.text())
def test_a_one_column_key_splits_back_into_its_value(value: str) -> None:
    key = join_key([value])
    assert split_key(key, 1) == [value]
    assert canonical_key(key) == key


@given(st.text())
def test_canonical_key_is_idempotent(text: str) -> None:
    assert canonical_key(canonical_key(text)) == canonical_key(text)


def lower_hex(part: str) -> str:
    return re.sub("%[0-9A-F]{2}", lambda escape: escape.group().lower(), quote(part, safe=""))


@given(PARTS, st.sampled_from([quote, lower_hex, lambda p: p]))
def test_every_valid_percent_encoding_of_the_parts_is_the_same_key(parts, encode) -> None:
    parts = [part.replace("/", "") for part in parts]  # a raw '/' is a separator
    if encode is not quote and any("%" in part for part in parts):
        return  # a raw '%' is not an encoding of itself
    spelled = "/".join(encode(part) for part in parts)
    assert canonical_key(spelled) == join_key(parts)


def test_an_apostrophe_encoded_or_not_names_the_same_record() -> None:
    plain = Address("crm", "orders", "o'brien/5")
    encoded = Address.parse("crm/orders/o%27brien/5")
    assert encoded == plain and encoded.entity_id == plain.entity_id
    assert str(encoded) == "crm/orders/o'brien/5"
    assert Address("crm", "orders", "50%").key == "50%25"  # a lone '%' is a literal one


def test_the_scan_check_refuses_a_key_out_of_order_or_not_in_its_one_form() -> None:
    with pytest.raises(AdapterError, match="gave key 'eu-west/5' after 'eu/9'"):
        list(in_key_order([("eu/9", 1), ("eu-west/5", 2)], "crm/x"))
    with pytest.raises(AdapterError, match="gave key 'eu/9' after 'eu/9'"):
        list(in_key_order([("eu/9", 1), ("eu/9", 2)], "crm/x"))
    with pytest.raises(AdapterError, match='written "o\'b/1"'):
        list(in_key_order([("o%27b/1", 1)], "crm/x"))


def test_the_one_order_is_key_text_order_whatever_the_parts() -> None:
    keys = [join_key([region, number]) for region in AWKWARD for number in (2, 10, -3, 9)]
    shuffled = sorted(keys, key=lambda key: key[::-1])
    assert [key for key, _ in sorted_by_key((key, {"k": key}) for key in shuffled)] == sorted(keys)
    assert join_key(["eu-west", 5]) < join_key(["eu", 9])  # not tuple order


def test_merge_pairs_equal_keys_of_two_streams() -> None:
    left = iter(["a", "b", "d"])
    right = iter([("b", 2), ("c", 3)])
    merged = list(merge_by_key(left, right, lambda k: k, lambda r: r[0]))
    assert merged == [
        ("a", "a", None),
        ("b", "b", ("b", 2)),
        ("c", None, ("c", 3)),
        ("d", "d", None),
    ]


def test_sorting_a_scan_keeps_memory_flat() -> None:
    """60,000 records of ~100 bytes would hold ~30 MB in a list; the sort holds one batch."""
    import random
    import tracemalloc

    rng = random.Random(7)
    records = (
        (f"{rng.randrange(10**9):09d}/{i}", {"name": "x" * 40, "n": i}) for i in range(60_000)
    )
    tracemalloc.start()
    try:
        keys = [key for key, _ in sorted_by_key(records)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert keys == sorted(keys) and len(keys) == 60_000
    assert peak < 15_000_000, f"peak {peak / 1e6:.1f} MB"
