"""The HTTP adapter keeps the adapter contract against a real HTTP server on loopback, and keeps
its word on types, retries, lost responses and compare-and-set windows (see adapters/http/)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from adapter_contract import SEED, AdapterContract
from crm_server import CrmServer

from adapters.http import CollectionRoute, HttpAdapter
from ledger.config import open_adapter
from ledger.errors import AdapterError, ConfigurationError, TargetRejected, TransientError
from ledger.ports import Write, join_key
from ledger.values import same

C = "contacts"
FAST = {"retry_wait_initial": 0.001, "retry_wait_max": 0.01}


def connect(
    crm: CrmServer, route: CollectionRoute | None = None, *, check: bool = True, **options: Any
) -> HttpAdapter:
    """An adapter on the stand-in CRM; with `check`, its writes already checked (the probe
    made, as a run does before its first write) and the server's request log cleared."""
    options = {**FAST, "require_conditional": crm.etags is True, **options}
    adapter = HttpAdapter("crm", crm.url, {C: route or CollectionRoute("/contacts")}, **options)
    if check and crm.records(C):
        adapter.check_writes(C)
        crm.hits.clear()
        crm.applied.clear()
    return adapter


class _OnCrmServer(AdapterContract):
    etags = True

    @pytest.fixture(autouse=True)
    def _crm_server(self, crm_server: Callable[..., CrmServer]) -> CrmServer:
        self.crm = crm_server(etags=self.etags)
        return self.crm

    def make_adapter(self, records: dict[str, dict[str, Any]]) -> HttpAdapter:
        self.crm.seed(C, records)
        return connect(self.crm)


class TestHttpAdapterWithEtags(_OnCrmServer):
    etags = True


class TestHttpAdapterWithoutEtags(_OnCrmServer):
    etags = False


@pytest.fixture(params=[True, False], ids=["etags", "no-etags"])
def crm(request: pytest.FixtureRequest, crm_server: Callable[..., CrmServer]) -> CrmServer:
    server = crm_server(etags=request.param)
    server.seed(C, SEED)
    return server


@pytest.fixture
def etag_crm(crm_server: Callable[..., CrmServer]) -> CrmServer:
    server = crm_server(etags=True)
    server.seed(C, SEED)
    return server


@pytest.fixture
def plain_crm(crm_server: Callable[..., CrmServer]) -> CrmServer:
    server = crm_server(etags=False)
    server.seed(C, SEED)
    return server


@pytest.fixture
def adapter(crm: CrmServer) -> Iterator[HttpAdapter]:
    adapter = connect(crm)
    yield adapter
    adapter.close()


def applied(crm: CrmServer, method: str) -> int:
    return sum(1 for seen, _, _ in crm.applied if seen == method)


# -- types --------------------------------------------------------------------------------

JSON_VALUES = {
    "int": 7,
    "float": 7.0,
    "fraction": 0.1,
    "true": True,
    "false": False,
    "zero": 0,
    "null": None,
    "text": 'Zoë ✓ "quoted" \\ /',
    "big": 2**80,
    "negative_big": -(2**70),
    "nested": {"list": [1, 2.5, {"deep": None}], "empty": {}, "flags": [True, 0, 0.0, ""]},
}


def test_json_types_come_back_exactly_as_written(adapter: HttpAdapter) -> None:
    (created,) = adapter.write(C, [Write("t", "create", JSON_VALUES)])
    assert created.outcome == "applied"
    read = adapter.read(C, ["t"])["t"]
    scanned = dict(adapter.scan(C))["t"]
    for record in (read, scanned):
        assert same(record, JSON_VALUES), record
        assert "missing" not in record and record["null"] is None


def test_null_sets_null_and_unset_removes_the_field(adapter: HttpAdapter, crm: CrmServer) -> None:
    nulled, removed = adapter.write(
        C,
        [
            Write("1", "update", {"stage": None}, expected={"stage": "lead"}),
            Write("2", "update", {"score": 31}, unset=("stage",), expected={"stage": "customer"}),
        ],
    )
    assert (nulled.outcome, removed.outcome) == ("applied", "applied")
    assert crm.record(C, "1") == {"name": "Ann", "stage": None, "score": 10}
    assert crm.record(C, "2") == {"name": "Cat", "score": 31}
    assert crm.count("PUT") == 1  # REST has no "remove a field": the whole record is PUT


def test_values_json_cannot_carry_fail_before_any_request(
    adapter: HttpAdapter, crm: CrmServer
) -> None:
    decimal, day = adapter.write(
        C,
        [
            Write("1", "update", {"score": Decimal("10.5")}),
            Write("2", "update", {"meta": {"since": date(2024, 1, 2)}}),
        ],
    )
    assert decimal.outcome == day.outcome == "failed"
    assert "'score' holds a Decimal" in (decimal.error or "")
    assert "'meta.since' holds a date" in (day.error or "")
    assert crm.hits == []


def test_keys_with_slashes_and_spaces_round_trip(adapter: HttpAdapter) -> None:
    key = join_key(["acme/eu", "ann smith"])
    (created,) = adapter.write(C, [Write(key, "create", {"name": "Ann"})])
    assert created.outcome == "applied" and created.assigned_key is None
    assert adapter.read(C, [key]) == {key: {"name": "Ann"}}
    assert key in dict(adapter.scan(C))


# -- retries ------------------------------------------------------------------------------


def test_transient_failures_are_retried_and_the_write_lands_once(
    adapter: HttpAdapter, crm: CrmServer
) -> None:
    crm.fail_next(2, 503, method="PATCH")
    (result,) = adapter.write(
        C, [Write("1", "update", {"stage": "sql"}, expected={"stage": "lead"})]
    )
    assert result.outcome == "applied" and result.before == SEED["1"]
    assert crm.record(C, "1") == {**SEED["1"], "stage": "sql"}
    assert (crm.count("PATCH"), applied(crm, "PATCH")) == (3, 1)


def test_reads_are_retried_through_transient_failures(adapter: HttpAdapter, crm: CrmServer) -> None:
    crm.fail_next(2, 502, method="GET")
    assert adapter.read(C, ["1"]) == {"1": SEED["1"]}
    crm.fail_next(2, 503, method="GET")
    assert dict(adapter.scan(C)) == SEED


def test_exhausted_retries_raise_transient_error_naming_the_request(
    adapter: HttpAdapter, crm: CrmServer
) -> None:
    crm.fail_next(5, 503, method="PATCH")
    with pytest.raises(TransientError) as raised:
        adapter.write(C, [Write("1", "update", {"stage": "sql"}, expected={"stage": "lead"})])
    message = str(raised.value)
    assert f"crm: PATCH {crm.url}/contacts/1 failed after 5 attempt(s)" in message
    assert "503 Service Unavailable" in message
    assert crm.record(C, "1") == SEED["1"]


def test_a_batch_that_loses_the_system_after_a_write_landed_reports_rather_than_raises(
    adapter: HttpAdapter, crm: CrmServer
) -> None:
    crm.after_get(C, "10", lambda: crm.fail_next(100, 503))
    first, second, third = adapter.write(
        C,
        [
            Write("1", "update", {"score": 11}, expected={"score": 10}),
            Write("10", "update", {"score": 21}, expected={"score": 20}),
            Write("2", "update", {"score": 31}, expected={"score": 30}),
        ],
    )
    # A 503 to a PATCH may come after the write landed, and nothing can be read to tell.
    assert [first.outcome, second.outcome, third.outcome] == ["applied", "unknown", "failed"]
    assert "503" in (second.error or "") and "stays pending" in (second.error or "")
    assert "not attempted" in (third.error or "")


def test_a_batch_stopped_before_anything_landed_raises_naming_the_request(
    adapter: HttpAdapter, crm: CrmServer
) -> None:
    crm.fail_next(100, 503, method="GET")
    with pytest.raises(TransientError, match="this read changed nothing"):
        adapter.write(C, [Write("1", "update", {"score": 11}, expected={"score": 10})])


def test_429_waits_as_long_as_retry_after_asks(crm: CrmServer) -> None:
    waits: list[float] = []
    adapter = connect(crm, sleep=waits.append, retry_wait_max=2.0)
    crm.fail_next(1, 429, method="PATCH", retry_after="1")
    (result,) = adapter.write(C, [Write("1", "update", {"stage": "sql"})])
    assert result.outcome == "applied"
    assert waits == [1.0] and crm.count("PATCH") == 2


def test_a_retry_after_longer_than_the_longest_wait_gives_up_at_once(crm: CrmServer) -> None:
    waits: list[float] = []
    adapter = connect(crm, sleep=waits.append, retry_wait_max=2.0)
    crm.fail_next(1, 429, method="PATCH", retry_after="3600")
    with pytest.raises(TransientError, match="asked to wait 3600s"):
        adapter.write(C, [Write("1", "update", {"stage": "sql"})])
    assert waits == [] and crm.count("PATCH") == 1


def test_a_permanent_refusal_is_failed_with_the_servers_reason_and_not_retried(
    adapter: HttpAdapter, crm: CrmServer
) -> None:
    crm.fail_next(1, 422, method="PATCH", body='{"error": "score must be at least 0"}')
    (result,) = adapter.write(C, [Write("1", "update", {"score": -1}, expected={"score": 10})])
    assert result.outcome == "failed" and result.before == SEED["1"]
    assert "422 Unprocessable Entity" in (result.error or "")
    assert "score must be at least 0" in (result.error or "")
    assert crm.count("PATCH") == 1 and crm.record(C, "1") == SEED["1"]


def test_a_409_that_is_not_a_race_is_failed_not_stale(adapter: HttpAdapter, crm: CrmServer) -> None:
    crm.fail_next(1, 409, method="PATCH", body="email already used by contact 7")
    (result,) = adapter.write(
        C, [Write("1", "update", {"stage": "sql"}, expected={"stage": "lead"})]
    )
    assert result.outcome == "failed" and "email already used" in (result.error or "")


def test_a_write_refused_at_its_read_fails_alone(adapter: HttpAdapter, crm: CrmServer) -> None:
    crm.fail_next(1, 401, method="GET", body="token expired")
    refused, landed = adapter.write(
        C, [Write("1", "update", {"score": 11}), Write("2", "update", {"score": 31})]
    )
    assert (refused.outcome, landed.outcome) == ("failed", "applied")
    assert "401 Unauthorized: token expired" in (refused.error or "")
    assert crm.record(C, "1") == SEED["1"]


def test_a_refused_read_raises_target_rejected_with_the_reason(
    adapter: HttpAdapter, crm: CrmServer
) -> None:
    crm.fail_next(1, 403, method="GET", body="token lacks contacts.read")
    with pytest.raises(TargetRejected, match=r"403 Forbidden: token lacks contacts\.read"):
        adapter.read(C, ["1"])
    assert crm.count("GET") == 1


# -- lost responses -----------------------------------------------------------------------


def test_a_lost_patch_response_is_not_applied_twice(adapter: HttpAdapter, crm: CrmServer) -> None:
    crm.drop_response_next(1, method="PATCH")
    (result,) = adapter.write(
        C, [Write("1", "update", {"stage": "sql"}, expected={"stage": "lead"})]
    )
    assert result.outcome == "applied" and result.before == SEED["1"]
    assert crm.record(C, "1") == {**SEED["1"], "stage": "sql"}
    assert (crm.count("PATCH"), applied(crm, "PATCH")) == (1, 1)


def test_a_lost_post_response_is_not_applied_twice(adapter: HttpAdapter, crm: CrmServer) -> None:
    crm.drop_response_next(1, method="POST")
    new = {"name": "Dan", "stage": None, "score": 5}
    (result,) = adapter.write(C, [Write("3", "create", new)])
    assert result.outcome == "applied" and result.before is None
    assert crm.record(C, "3") == new
    assert (crm.count("POST"), applied(crm, "POST")) == (1, 1)


def test_a_lost_delete_response_is_not_applied_twice(adapter: HttpAdapter, crm: CrmServer) -> None:
    crm.drop_response_next(1, method="DELETE")
    (result,) = adapter.write(C, [Write("2", "delete", expected={"score": 30})])
    assert result.outcome == "applied" and result.before == SEED["2"]
    assert crm.count("DELETE") == 1 and crm.record(C, "2") is None


def test_a_lost_response_is_settled_by_a_last_read_when_attempts_run_out(crm: CrmServer) -> None:
    adapter = connect(crm, retry_attempts=1)
    crm.drop_response_next(1, method="PATCH")
    (result,) = adapter.write(C, [Write("1", "update", {"stage": "sql"})])
    assert result.outcome == "applied" and crm.count("PATCH") == 1


def test_a_lost_response_that_cannot_be_settled_is_unknown_never_failed(
    adapter: HttpAdapter, crm: CrmServer
) -> None:
    crm.after_get(C, "1", lambda: crm.fail_next(100, 503, method="GET"))
    crm.drop_response_next(1, method="PATCH")
    (result,) = adapter.write(
        C, [Write("1", "update", {"stage": "sql"}, expected={"stage": "lead"})]
    )
    assert result.outcome == "unknown" and result.before == SEED["1"]  # kept for recovery
    assert "whether the write landed is unknown" in (result.error or "")
    assert crm.count("PATCH") == 1 and crm.record(C, "1") == {**SEED["1"], "stage": "sql"}


def test_a_lost_post_response_to_a_server_assigning_ids_creates_one_record(
    crm_server: Callable[..., CrmServer],
) -> None:
    crm = crm_server(assign_ids=True)
    crm.seed(C, SEED)
    crm.drop_response_next(1, method="POST")
    (result,) = connect(crm).write(C, [Write("3", "create", {"name": "Dan"})])
    assert result.outcome == "applied" and result.assigned_key == "1000"
    assert crm.records(C) == {**SEED, "1000": {"name": "Dan"}}
    assert (crm.count("POST"), applied(crm, "POST")) == (2, 1)  # replayed by Idempotency-Key


# -- compare-and-set windows --------------------------------------------------------------


def test_with_etags_an_edit_between_get_and_patch_is_stale_and_kept(
    etag_crm: CrmServer,
) -> None:
    adapter = connect(etag_crm)
    etag_crm.after_get(C, "1", lambda: etag_crm.edit(C, "1", stage="mql"))
    (result,) = adapter.write(
        C, [Write("1", "update", {"stage": "sql"}, expected={"stage": "lead"})]
    )
    assert (result.outcome, result.field, result.expected, result.actual) == (
        "stale",
        "stage",
        "lead",
        "mql",
    )
    assert etag_crm.record(C, "1") == {**SEED["1"], "stage": "mql"}
    assert etag_crm.count("PATCH") == 1 and applied(etag_crm, "PATCH") == 0  # answered 412


def test_with_etags_an_edit_to_a_field_the_write_does_not_rely_on_is_kept_and_the_write_lands(
    etag_crm: CrmServer,
) -> None:
    adapter = connect(etag_crm)
    etag_crm.after_get(C, "1", lambda: etag_crm.edit(C, "1", name="Ann B."))
    (result,) = adapter.write(
        C, [Write("1", "update", {"stage": "sql"}, expected={"stage": "lead"})]
    )
    assert result.outcome == "applied"
    assert result.before == {**SEED["1"], "name": "Ann B."}  # the version it was written over
    assert etag_crm.record(C, "1") == {"name": "Ann B.", "stage": "sql", "score": 10}
    assert etag_crm.count("PATCH") == 2


def test_with_etags_a_record_that_keeps_moving_is_stale_naming_what_moved(
    etag_crm: CrmServer,
) -> None:
    adapter = connect(etag_crm, retry_attempts=3)
    for n in range(3):
        etag_crm.after_get(C, "1", lambda n=n: etag_crm.edit(C, "1", name=f"Ann {n}"))
    (result,) = adapter.write(
        C, [Write("1", "update", {"stage": "sql"}, expected={"stage": "lead"})]
    )
    assert (result.outcome, result.field, result.expected, result.actual) == (
        "stale",
        "name",
        "Ann 1",
        "Ann 2",
    )
    assert etag_crm.record(C, "1") == {**SEED["1"], "name": "Ann 2"}


def test_with_etags_a_put_create_racing_another_create_is_stale(etag_crm: CrmServer) -> None:
    theirs = {"name": "Eve", "stage": None, "score": 1}
    adapter = connect(etag_crm, CollectionRoute("/contacts", put_create=True))
    etag_crm.after_get(C, "3", lambda: etag_crm.seed(C, {"3": theirs}))
    (result,) = adapter.write(C, [Write("3", "create", {"name": "Dan"})])
    assert (result.outcome, result.field, result.actual) == ("stale", "(record)", "exists")
    assert etag_crm.record(C, "3") == theirs and etag_crm.count("PUT") == 1


def test_without_etags_the_read_before_the_write_catches_an_earlier_edit(
    plain_crm: CrmServer,
) -> None:
    adapter = connect(plain_crm)
    drafted_from = adapter.read(C, ["1"])["1"]
    assert drafted_from is not None
    plain_crm.edit(C, "1", stage="mql")
    (result,) = adapter.write(
        C, [Write("1", "update", {"stage": "sql"}, expected={"stage": drafted_from["stage"]})]
    )
    assert (result.outcome, result.expected, result.actual) == ("stale", "lead", "mql")
    assert plain_crm.record(C, "1") == {**SEED["1"], "stage": "mql"}


def test_without_etags_an_edit_between_the_read_and_the_write_is_the_documented_window(
    plain_crm: CrmServer,
) -> None:
    adapter = connect(plain_crm)
    plain_crm.after_get(C, "1", lambda: plain_crm.edit(C, "1", stage="mql"))
    (result,) = adapter.write(
        C, [Write("1", "update", {"stage": "sql"}, expected={"stage": "lead"})]
    )
    # The edit landed inside the window and was overwritten; the read after the write shows
    # only the written value, so nothing can tell (a version_field can: see below).
    assert (result.outcome, result.field) == ("applied", None)
    assert plain_crm.record(C, "1") == {**SEED["1"], "stage": "sql"}


# -- ids and paging -----------------------------------------------------------------------


def test_server_assigned_ids_come_back_as_assigned_key(
    crm_server: Callable[..., CrmServer],
) -> None:
    crm = crm_server(assign_ids=True)
    crm.seed(C, SEED)
    adapter = connect(crm)
    new = {"name": "Dan", "stage": None, "score": 5}
    (result,) = adapter.write(C, [Write("3", "create", new)])
    assert (result.outcome, result.assigned_key) == ("applied", "1000")
    assert adapter.read(C, ["1000", "3"]) == {"1000": new, "3": None}


def test_scan_pages_through_more_than_a_page_in_key_text_order(crm: CrmServer) -> None:
    many = {str(n): {"n": n} for n in range(250)}
    crm.seed(C, many)
    scanned = list(connect(crm, page_size=100).scan(C))
    assert [key for key, _ in scanned] == sorted({**many, **SEED})
    assert dict(scanned) == {**SEED, **many}
    assert sum(1 for method, path in crm.hits if (method, path) == ("GET", "/contacts")) == 3


def test_scan_uses_the_routes_paging_names(crm_server: Callable[..., CrmServer]) -> None:
    crm = crm_server(limit_param="per_page", after_param="cursor")
    crm.seed(C, {str(n): {"n": n} for n in range(5)})
    route = CollectionRoute("/contacts", limit_param="per_page", after_param="cursor")
    adapter = connect(crm, route, page_size=2)
    assert [key for key, _ in adapter.scan(C)] == ["0", "1", "2", "3", "4"]
    assert crm.count("GET") == 3


def test_scan_refuses_a_server_that_does_not_page_in_key_text_order() -> None:
    def numeric_order(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"items": [{"id": 2}, {"id": 10}], "next": None})

    client = httpx.Client(transport=httpx.MockTransport(numeric_order))
    adapter = HttpAdapter(
        "crm", "http://crm.test", {C: CollectionRoute("/contacts")}, client=client
    )
    with pytest.raises(AdapterError, match="listed '10' after '2'"):
        list(adapter.scan(C))


def test_an_unknown_collection_is_a_configuration_error(adapter: HttpAdapter) -> None:
    with pytest.raises(ConfigurationError, match="no route for collection 'deals'"):
        adapter.read("deals", ["1"])


# -- conditional writes: found out, then required or acknowledged -------------------------


def test_a_server_honouring_if_match_is_found_so_by_a_probe_that_changes_nothing(
    etag_crm: CrmServer,
) -> None:
    adapter = connect(etag_crm, check=False)
    assert adapter.check_writes(C) == []
    assert etag_crm.count("PATCH") == 1 and etag_crm.applied == []  # answered 412
    assert etag_crm.records(C) == SEED


def test_a_server_ignoring_if_match_is_found_out_and_nothing_is_written(
    crm_server: Callable[..., CrmServer],
) -> None:
    crm = crm_server(if_match=False)  # strong ETags, conditions ignored
    crm.seed(C, SEED)
    adapter = connect(crm, check=False, require_conditional=True)
    with pytest.raises(ConfigurationError, match=r"ignores If-Match.*require_conditional"):
        adapter.check_writes(C)
    assert crm.records(C) == SEED  # the probe changed no field
    crm.hits.clear()
    (result,) = adapter.write(
        C, [Write("1", "update", {"stage": "sql"}, expected={"stage": "lead"})]
    )
    assert result.outcome == "failed" and "ignores If-Match" in (result.error or "")
    assert crm.count("PATCH") == 0 and crm.record(C, "1") == SEED["1"]


def test_without_etags_writes_are_refused_unless_acknowledged(plain_crm: CrmServer) -> None:
    required = connect(plain_crm, check=False, require_conditional=True)
    with pytest.raises(ConfigurationError, match="carry no ETag"):
        required.check_writes(C)
    acknowledged = connect(plain_crm, check=False, require_conditional=False)
    (warning,) = acknowledged.check_writes(C)
    assert warning.startswith("crm/contacts: writes are best effort, not conditional")


def test_weak_etags_are_never_sent_in_if_match(crm_server: Callable[..., CrmServer]) -> None:
    """A weak ETag never matches under RFC 9110's strong comparison: sent in If-Match, every
    write was answered 412 and reported stale with identical expected and actual values."""
    crm = crm_server(etags="weak")
    crm.seed(C, SEED)
    required = connect(crm, check=False, require_conditional=True)
    with pytest.raises(ConfigurationError, match=r'only weak ETags \(W/"v\d+"\)'):
        required.check_writes(C)
    adapter = connect(crm, require_conditional=False)
    (result,) = adapter.write(
        C, [Write("1", "update", {"stage": "sql"}, expected={"stage": "lead"})]
    )
    assert (result.outcome, result.field) == ("applied", None)
    assert crm.record(C, "1") == {**SEED["1"], "stage": "sql"}


def test_a_412_to_the_etag_the_server_itself_sends_is_failed_not_stale(
    etag_crm: CrmServer,
) -> None:
    adapter = connect(etag_crm)
    etag_crm.fail_next(5, 412, method="PATCH")
    (result,) = adapter.write(
        C, [Write("1", "update", {"stage": "sql"}, expected={"stage": "lead"})]
    )
    assert result.outcome == "failed" and "no client can satisfy" in (result.error or "")
    assert etag_crm.count("PATCH") == 1


def test_best_effort_an_edit_to_another_field_in_the_window_is_a_conflict(
    plain_crm: CrmServer,
) -> None:
    adapter = connect(plain_crm)
    plain_crm.after_get(C, "1", lambda: plain_crm.edit(C, "1", name="Ann B."))
    (result,) = adapter.write(
        C, [Write("1", "update", {"stage": "sql"}, expected={"stage": "lead"})]
    )
    assert (result.outcome, result.field, result.expected, result.actual) == (
        "applied",
        "name",
        "Ann",
        "Ann B.",
    )
    assert result.before == SEED["1"]  # what the write was made over, not the outside value
    assert plain_crm.record(C, "1") == {"name": "Ann B.", "stage": "sql", "score": 10}


def test_a_version_field_exposes_an_edit_overwritten_inside_the_window(
    crm_server: Callable[..., CrmServer],
) -> None:
    crm = crm_server(etags=False, version_field="version")
    crm.seed(C, SEED)
    adapter = connect(crm, CollectionRoute("/contacts", version_field="version"))
    crm.after_get(C, "1", lambda: crm.edit(C, "1", stage="mql"))  # the field being written
    (result,) = adapter.write(
        C, [Write("1", "update", {"stage": "sql"}, expected={"stage": "lead"})]
    )
    assert (result.outcome, result.field, result.expected, result.actual) == (
        "applied",
        "version",
        2,
        3,
    )


# -- configuration ------------------------------------------------------------------------


def http_config(tmp_path: Path, crm: CrmServer, settings: str) -> str:
    config = tmp_path / "ledger.toml"
    config.write_text(
        f'[systems.crm]\ntype = "http"\nbase_url = "{crm.url}"\n{settings}\n'
        'collections.contacts = { path = "/contacts" }\n'
    )
    return str(config)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("timout = 5", "systems.crm.timout is not a setting; expected some of"),
        ('retry_attempts = "3"', "systems.crm.retry_attempts must be a whole number, not '3'"),
        ("require_conditional = 1", "systems.crm.require_conditional must be true or false"),
        ('number_model = "js"', "number_model must be one of 'json', 'javascript', not 'js'"),
        ('conditional_writes = "yes"', "conditional_writes must be one of 'probe', 'honoured'"),
    ],
)
def test_unknown_or_malformed_http_settings_are_refused_naming_the_key(
    tmp_path: Path, etag_crm: CrmServer, settings: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        open_adapter("crm", http_config(tmp_path, etag_crm, settings))


def test_retries_are_configurable(tmp_path: Path, etag_crm: CrmServer) -> None:
    adapter = open_adapter(
        "crm", http_config(tmp_path, etag_crm, "retry_attempts = 2\nretry_wait_initial = 0.001")
    )
    etag_crm.fail_next(5, 503, method="GET")
    with pytest.raises(TransientError, match="failed after 2 attempt"):
        adapter.read(C, ["1"])
    assert isinstance(adapter, HttpAdapter) and adapter.activity.retries == 1
