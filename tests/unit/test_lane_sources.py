"""Source records declared with their times (``NAME@TIME``), as the source-age trigger reads
them."""

from datetime import UTC, datetime

import pytest

from ledger import Address, Change
from ledger.errors import InvalidChange
from ledger.triggers import source_times


def test_a_source_with_a_time_is_read_by_its_name():
    assert source_times(["sheet/leads/17@2026-11-27T09:00:00Z", "sheet/leads/18"]) == {
        "sheet/leads/17": datetime(2026, 11, 27, 9, tzinfo=UTC)
    }


def test_an_at_sign_not_followed_by_a_date_is_part_of_the_name():
    assert source_times(["crm/contacts/bob@example.com"]) == {}


def test_the_last_at_sign_separates_the_time():
    assert source_times(["crm/contacts/bob@example.com@2026-11-27T09:00:00+01:00"]) == {
        "crm/contacts/bob@example.com": datetime.fromisoformat("2026-11-27T09:00:00+01:00")
    }


@pytest.mark.parametrize("time", ["2026-13-01T00:00:00Z", "2026-11-27T09:00:00"])
def test_a_malformed_or_naive_source_time_is_refused_when_the_change_is_read(time):
    line = {"entity": "crm/contacts/1", "op": "create", "sources": [f"sheet/leads/1@{time}"]}
    with pytest.raises(InvalidChange, match=f"source 'sheet/leads/1@{time}'"):
        Change.from_mapping(line)
    with pytest.raises(InvalidChange, match="sheet/leads/1"):
        Change(Address("crm", "contacts", "1"), "create", sources=(f"sheet/leads/1@{time}",))
