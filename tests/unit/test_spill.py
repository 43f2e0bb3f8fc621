"""`Spilled` behaves as the list of what was appended, whatever the pages it was cut into."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import orjson
from hypothesis import given
from hypothesis import strategies as st

from ledger.spill import PAGE, Spilled

SIZE = 2 * PAGE + 345  # two pages on disk and one being written


def spilled(n: int) -> Spilled[dict]:
    return Spilled.of(
        ({"n": i, "text": f"line\n{i}"} for i in range(n)), orjson.dumps, orjson.loads
    )


EXPECTED = [{"n": i, "text": f"line\n{i}"} for i in range(SIZE)]
SPILLED = spilled(SIZE)


@given(
    st.integers(-SIZE - 5, SIZE + 5),
    st.integers(-SIZE - 5, SIZE + 5),
    st.sampled_from([1, 1, 3, -1]),
)
def test_slices_are_those_of_the_list(start: int, stop: int, step: int) -> None:
    assert SPILLED[start:stop:step] == EXPECTED[start:stop:step]


@given(st.integers(-SIZE, SIZE - 1))
def test_each_item_reads_back_as_appended(index: int) -> None:
    assert SPILLED[index] == EXPECTED[index]


def test_iteration_length_and_equality_follow_the_items() -> None:
    assert len(SPILLED) == SIZE
    assert list(SPILLED) == EXPECTED
    same, shorter, other = spilled(SIZE), spilled(SIZE - 1), [*EXPECTED[:-1], {"n": -1}]
    assert (SPILLED == EXPECTED, same == SPILLED, shorter == SPILLED, other == SPILLED) == (
        True,
        True,
        False,
        False,
    )


def test_the_digest_is_that_of_the_lines_as_saved() -> None:
    lines = b"".join(orjson.dumps(item) + b"\n" for item in EXPECTED)
    assert SPILLED.digest == "sha256:" + hashlib.sha256(lines).hexdigest()
    assert [orjson.loads(line) for line in SPILLED.lines()] == EXPECTED


def test_a_small_sequence_stays_in_memory() -> None:
    small = Spilled.of([Decimal("1.10")], lambda d: str(d).encode(), lambda b: Decimal(b.decode()))
    assert small._file is None and small[0] == Decimal("1.10") and str(small[0]) == "1.10"


def test_an_item_spanning_lines_is_refused() -> None:
    raw = Spilled(bytes, bytes)
    try:
        raw.append_line(b"two\nlines")
    except ValueError as error:
        assert "one line" in str(error)
    else:
        raise AssertionError("a line with a newline was accepted")
    assert len(raw) == 0


def test_out_of_range_is_an_index_error() -> None:
    for index in (SIZE, -SIZE - 1):
        try:
            SPILLED[index]
        except IndexError:
            continue
        raise AssertionError(f"index {index} read something")
