"""The contract every adapter honours, run against each real backend by subclassing.

A subclass provides `make_adapter(records)`: a real system (SQL table, file, HTTP server)
seeded with `records` in collection ``contacts``, whose fields are ``name`` (text),
``stage`` (text or null) and ``score`` (integer), keyed by text ``id``.
"""

from __future__ import annotations

from typing import Any

import pytest

from ledger.ports import Adapter, Write
from ledger.values import ABSENT

C = "contacts"
SEED = {
    "1": {"name": "Ann", "stage": "lead", "score": 10},
    "10": {"name": "Bob", "stage": None, "score": 20},
    "2": {"name": "Cat", "stage": "customer", "score": 30},
}


class AdapterContract:
    """Behaviour every adapter must show; one test per behaviour."""

    def make_adapter(self, records: dict[str, dict[str, Any]]) -> Adapter:
        raise NotImplementedError

    @pytest.fixture
    def adapter(self):
        adapter = self.make_adapter({key: dict(value) for key, value in SEED.items()})
        yield adapter
        adapter.close()

    def test_read_gives_records_exactly_and_none_for_missing(self, adapter):
        assert adapter.read(C, ["1", "10", "404"]) == {
            "1": SEED["1"],
            "10": SEED["10"],
            "404": None,
        }

    def test_scan_streams_every_record_in_key_text_order(self, adapter):
        assert [key for key, _ in adapter.scan(C)] == ["1", "10", "2"]
        assert dict(adapter.scan(C)) == SEED

    def test_update_applies_when_the_record_holds_the_expected_values(self, adapter):
        (result,) = adapter.write(
            C, [Write("1", "update", {"stage": "sql"}, expected={"stage": "lead"})]
        )
        assert result.outcome == "applied"
        assert result.before == SEED["1"]
        assert adapter.read(C, ["1"])["1"] == {**SEED["1"], "stage": "sql"}

    def test_update_is_refused_as_stale_when_the_record_moved(self, adapter):
        (result,) = adapter.write(
            C, [Write("1", "update", {"stage": "sql"}, expected={"stage": "mql"})]
        )
        assert (result.outcome, result.field, result.expected, result.actual) == (
            "stale",
            "stage",
            "mql",
            "lead",
        )
        assert adapter.read(C, ["1"])["1"] == SEED["1"]

    def test_null_is_an_expected_value_like_any_other(self, adapter):
        ok, stale = adapter.write(
            C,
            [
                Write("10", "update", {"stage": "lead"}, expected={"stage": None}),
                Write("2", "update", {"stage": "lead"}, expected={"stage": None}),
            ],
        )
        assert (ok.outcome, stale.outcome, stale.actual) == ("applied", "stale", "customer")

    def test_create_applies_once_and_then_is_stale(self, adapter):
        new = {"name": "Dan", "stage": None, "score": 5}
        (created,) = adapter.write(C, [Write("3", "create", new)])
        assert created.outcome == "applied" and created.before is None
        key = created.assigned_key or "3"
        assert adapter.read(C, [key])[key] == new
        if created.assigned_key is None:
            (again,) = adapter.write(C, [Write("3", "create", new)])
            assert (again.outcome, again.field) == ("stale", "(record)")

    def test_delete_removes_the_record_and_reports_its_last_values(self, adapter):
        (result,) = adapter.write(C, [Write("2", "delete", expected={"score": 30})])
        assert result.outcome == "applied" and result.before == SEED["2"]
        assert adapter.read(C, ["2"]) == {"2": None}

    def test_writing_a_missing_record_is_stale(self, adapter):
        (result,) = adapter.write(
            C, [Write("404", "update", {"stage": "x"}, expected={"stage": "y"})]
        )
        assert (result.outcome, result.field, result.actual) == ("stale", "(record)", ABSENT)

    def test_a_bulk_write_reports_each_record_and_is_not_stopped_by_one_refusal(self, adapter):
        results = adapter.write(
            C,
            [
                Write("1", "update", {"score": 11}, expected={"score": 10}),
                Write("10", "update", {"score": 21}, expected={"score": 999}),
                Write("2", "update", {"score": 31}, expected={"score": 30}),
            ],
        )
        assert [r.outcome for r in results] == ["applied", "stale", "applied"]
        assert [r.key for r in results] == ["1", "10", "2"]
        current = adapter.read(C, ["1", "10", "2"])
        assert [current[k]["score"] for k in ("1", "10", "2")] == [11, 20, 31]
