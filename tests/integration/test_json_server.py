"""The HTTP adapter against json-server, a REST server nobody here wrote (tests/json_server.py):
the adapter contract, each finding of issue 16 as a regression test, and a batch with outside
edits, rollback and reconciliation end to end. Faults come from tests/fault_proxy.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from adapter_contract import SEED, AdapterContract, C
from click.testing import CliRunner, Result
from fault_proxy import FaultProxy
from json_server import JsonServer

from adapters.http import CollectionRoute, HttpAdapter
from ledger import (
    Address,
    Change,
    Ledger,
    RollbackScope,
    apply_rollback,
    compare_with_target,
    open_ledger,
    plan_rollback,
)
from ledger.cli import main
from ledger.errors import AdapterError, ConfigurationError, NotFound, TransientError
from ledger.ports import Write
from ledger.runs import Run, Target, recover

FAST = {"retry_wait_initial": 0.001, "retry_wait_max": 0.01}

# json-server's own conventions, as a ledger.toml would declare them.
PAGES = {"listing": "page", "page_param": "_page", "limit_param": "_limit"}
JSON_SERVER = {"require_conditional": False, "number_model": "javascript"}


def rows(records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Records keyed by id text as json-server rows with numeric ids."""
    return [{"id": int(key), **record} for key, record in records.items()]


def connect(
    url: str,
    routes: dict[str, CollectionRoute] | None = None,
    **options: Any,
) -> HttpAdapter:
    routes = routes or {C: CollectionRoute("/contacts", assigns_ids=True, **PAGES)}
    return HttpAdapter("crm", url, routes, **{**FAST, **JSON_SERVER, **options})


@pytest.fixture
def server(json_server: Callable[[dict[str, Any]], JsonServer]) -> JsonServer:
    return json_server({C: rows(SEED), "deals": []})


@pytest.fixture
def proxy(server: JsonServer, fault_proxy: Callable[[str], FaultProxy]) -> FaultProxy:
    return fault_proxy(server.url)


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Ledger]:
    """A SQLite ledger (the end-to-end test below also runs on PostgreSQL)."""
    ledger = open_ledger(str(tmp_path / "ledger.db"))
    yield ledger
    ledger.close()


def outside(server: JsonServer, key: str, **fields: Any) -> None:
    """Someone else's edit, made straight to json-server (its own API, not the adapter)."""
    httpx.patch(f"{server.url}/contacts/{key}", json=fields).raise_for_status()


def update(key: str, **values: Any) -> Change:
    return Change(Address("crm", C, key), "update", values=values)


# -- the adapter contract -----------------------------------------------------------------


class TestContractOnJsonServer(AdapterContract):
    """The whole contract, on json-server with its ``_page``/``_limit`` listing."""

    @pytest.fixture(autouse=True)
    def _json_server(self, json_server: Callable[[dict[str, Any]], JsonServer]) -> None:
        self.start_server = json_server

    def make_adapter(self, records: dict[str, dict[str, Any]]) -> HttpAdapter:
        self.server = self.start_server({C: rows(records)})
        return connect(self.server.url)


LISTINGS = {
    "page": PAGES,
    "offset": {"listing": "offset", "offset_param": "_start", "limit_param": "_limit"},
    "link": {"listing": "link", "page_param": "_page", "limit_param": "_limit"},
    "array": {"listing": "array"},
}


@pytest.mark.parametrize("style", LISTINGS)
def test_every_listing_style_scans_the_whole_collection_in_key_text_order(
    tmp_path: Path, style: str, json_server: Callable[[dict[str, Any]], JsonServer]
) -> None:
    """json-server lists by numeric id (1, 2, ..., 10) in plain arrays; scan must yield key-text
    order ("1", "10", "11", ..., "2") across pages of 7."""
    many = {str(n): {"n": n} for n in range(1, 26)}
    server = json_server({C: rows(many)})
    route = CollectionRoute("/contacts", assigns_ids=True, **LISTINGS[style])
    scanned = list(connect(server.url, {C: route}, page_size=7).scan(C))
    assert [key for key, _ in scanned] == sorted(many)
    assert dict(scanned) == many


def test_the_fixture_serves_a_fresh_db_file(server: JsonServer) -> None:
    adapter = connect(server.url)
    assert adapter.read(C, ["1", "404"]) == {"1": SEED["1"], "404": None}
    assert server.records(C) == SEED


# -- 1. outside edits: conditional writes found out, required, or acknowledged ---------------


def test_json_server_is_found_not_to_honour_if_match_and_a_run_requiring_it_never_starts(
    server: JsonServer, proxy: FaultProxy, book: Ledger
) -> None:
    adapter = connect(proxy.url, require_conditional=True)
    run = Run(book, "b1")
    with pytest.raises(ConfigurationError, match=r"only weak ETags \(W/"):
        run.apply(Target(adapter, C), [update("1", stage="sql"), update("2", stage="sql")])
    assert proxy.count("PATCH") == 0 and server.records(C) == SEED
    assert book.index.pending() == []
    with pytest.raises(NotFound):
        book.history(Address("crm", C, "1"))


def test_an_outside_edit_inside_the_window_is_a_conflict_never_a_before_image(
    server: JsonServer, proxy: FaultProxy, book: Ledger
) -> None:
    adapter = connect(proxy.url)
    adapter.check_writes(C)  # found out before the run, as `ledger apply` does
    # The run reads the record, then the write GETs it again: the edit lands after that GET.
    proxy.after_forward(
        lambda: outside(server, "1", name="Ann B."), method="GET", path="/contacts/1", skip=1
    )
    with Run(book, "b1") as run:
        (outcome,) = run.apply(Target(adapter, C), [update("1", stage="sql")])

    assert (outcome.status, outcome.conflict) == ("applied", True)
    assert (outcome.field, outcome.expected, outcome.actual) == ("name", "Ann", "Ann B.")
    tracked, action = book.history(Address("crm", C, "1"))
    # The record as the run found it, then the batch's own before-image: the outside value is
    # a conflict (and drift), part of neither.
    assert (tracked.operation, tracked.after) == ("track", SEED["1"])
    assert (action.before, action.after) == ({"stage": "lead"}, {"stage": "sql"})
    assert server.records(C)["1"] == {**SEED["1"], "name": "Ann B.", "stage": "sql"}
    (drift,) = compare_with_target(book, adapter, C, tracked_only=True, all_fields=True)
    assert drift.key == "1" and drift.fields["name"][1] == "Ann B."  # reconcile shows it too


def test_an_outside_edit_right_after_the_write_is_a_conflict(
    server: JsonServer, proxy: FaultProxy
) -> None:
    adapter = connect(proxy.url)
    proxy.after_forward(lambda: outside(server, "1", stage="mql"), method="PATCH")
    (result,) = adapter.write(C, [Write("1", "update", {"stage": "sql"})])
    assert (result.outcome, result.field, result.expected, result.actual) == (
        "applied",
        "stage",
        "sql",
        "mql",
    )
    assert result.before == SEED["1"]


def test_an_edit_to_a_written_field_inside_the_window_is_the_documented_limit(
    server: JsonServer, proxy: FaultProxy
) -> None:
    """json-server exposes no version: an edit to the very field being written, landing
    between the GET and the PATCH, is overwritten unseen (docs/adapters.md says so)."""
    adapter = connect(proxy.url)
    proxy.after_forward(lambda: outside(server, "1", stage="mql"), method="GET", path="/contacts/1")
    (result,) = adapter.write(C, [Write("1", "update", {"stage": "sql"})])
    assert (result.outcome, result.field) == ("applied", None)
    assert server.records(C)["1"]["stage"] == "sql"


# -- 2. weak ETags ------------------------------------------------------------------------


def test_weak_etags_are_never_sent_in_if_match_and_the_system_is_said_to_offer_only_them(
    server: JsonServer, proxy: FaultProxy
) -> None:
    adapter = connect(proxy.url)
    (warning,) = adapter.check_writes(C)
    assert "only weak ETags" in warning and "best effort" in warning
    results = adapter.write(
        C,
        [
            Write("1", "update", {"stage": "sql"}, expected={"stage": "lead"}),
            Write("10", "update", {}, unset=("stage",), expected={"stage": None}),
            Write("2", "delete", expected={"score": 30}),
        ],
    )
    assert [r.outcome for r in results] == ["applied"] * 3
    assert proxy.if_match == []


# -- 3. an outcome nobody can know stays pending --------------------------------------------


def test_a_write_landing_as_the_server_dies_stays_pending_and_recover_restores_its_before_image(
    server: JsonServer, proxy: FaultProxy, book: Ledger
) -> None:
    adapter = connect(proxy.url)
    target = Target(adapter, C)
    changes = [update("1", score=11), update("10", score=21), update("2", score=31)]

    # json-server saves the PATCH of 10, then dies before its answer gets out; it stays down.
    def die_after_saving() -> None:
        server.kill_once_saved(lambda data: data[C][1]["score"] == 21)

    proxy.after_forward(die_after_saving, method="PATCH", path="/contacts/10", drop=True)
    with Run(book, "b1") as run:
        outcomes = run.apply(target, changes)

    assert [o.status for o in outcomes] == ["applied", "pending", "failed"]
    assert "stays pending" in (outcomes[1].error or "")
    assert server.records(C)["10"]["score"] == 21  # committed before it died
    assert [row[4] for row in book.index.pending("b1")] == ["10"]
    with pytest.raises(TransientError):
        recover(book, {"crm": adapter})  # still down: nothing settled, nothing lost
    assert len(book.index.pending("b1")) == 1

    server.restart()
    (settled,) = recover(book, {"crm": adapter})
    assert settled.status == "applied"
    assert settled.receipt is not None and settled.receipt.action.before == {"score": 20}
    with Run(book, "b1") as rerun:
        again = rerun.apply(target, changes)
    assert [o.status for o in again] == ["already_applied", "already_applied", "applied"]

    rollback = plan_rollback(book, RollbackScope(batches=("b1",)), {"crm": adapter})
    report = apply_rollback(book, rollback, {"crm": adapter})
    assert report.counts == {"restored": 3} and report.mismatches == []
    assert server.records(C) == SEED


# -- 4, 5, 6. ids the server assigns ----------------------------------------------------------


def test_creates_on_an_id_assigning_server_send_no_id_and_keep_its_numeric_ids(
    server: JsonServer, book: Ledger
) -> None:
    adapter = connect(server.url)
    new = {"name": "Dan", "stage": None, "score": 5}
    with Run(book, "b1") as run:
        outcomes = run.apply(
            Target(adapter, C),
            [Change(Address("crm", C, key), "create", values=new) for key in ("501", "new-01")],
        )
    assert [o.moved_to for o in outcomes] == ["crm/contacts/11", "crm/contacts/12"]
    assert [row["id"] for row in server.data()[C]] == [1, 10, 2, 11, 12]  # numbers, in order
    with Run(book, "b2") as run:
        run.apply(Target(adapter, C), [Change(Address("crm", C, "2"), "delete")])
    rollback = plan_rollback(book, RollbackScope(batches=("b2",)), {"crm": adapter})
    report = apply_rollback(book, rollback, {"crm": adapter})
    assert report.outcomes[0]["as"] == "crm/contacts/13"  # the server's counter, unbroken
    assert server.data()[C][-1] == {"id": 13, **SEED["2"]}


def test_rolling_back_creates_on_an_id_assigning_server_leaves_no_empty_records(
    server: JsonServer, book: Ledger
) -> None:
    adapter = connect(server.url)
    new = [{"name": "Dan", "stage": None, "score": 5}, {"name": "Eve", "stage": "lead", "score": 1}]
    with Run(book, "b1") as run:
        run.apply(
            Target(adapter, C),
            [Change(Address("crm", C, f"new-{n}"), "create", values=v) for n, v in enumerate(new)],
        )
    rollback = plan_rollback(book, RollbackScope(batches=("b1",)), {"crm": adapter})
    report = apply_rollback(book, rollback, {"crm": adapter})
    assert report.counts == {"deleted": 2}
    assert server.records(C) == SEED


def test_children_follow_a_re_created_parent_to_its_new_id(
    tmp_path: Path, book: Ledger, json_server: Callable[[dict[str, Any]], JsonServer]
) -> None:
    deals = {"1": {"contactId": 2, "amount": 100}, "2": {"contactId": 1, "amount": 50}}
    server = json_server({C: rows(SEED), "deals": rows(deals)})
    routes = {
        C: CollectionRoute("/contacts", assigns_ids=True, **PAGES),
        "deals": CollectionRoute("/deals", assigns_ids=True, parents={"contactId": C}, **PAGES),
    }
    adapter = connect(server.url, routes)
    with Run(book, "cleanup") as run:
        run.apply(Target(adapter, "deals"), [Change(Address("crm", "deals", "1"), "delete")])
        run.apply(Target(adapter, C), [Change(Address("crm", C, "2"), "delete")])
    rollback = plan_rollback(book, RollbackScope(batches=("cleanup",)), {"crm": adapter})
    report = apply_rollback(book, rollback, {"crm": adapter})
    moved = {o["entity"]: o["as"].rsplit("/", 1)[1] for o in report.outcomes}
    contact, deal = moved["crm/contacts/2"], moved["crm/deals/1"]
    assert server.records("deals")[deal]["contactId"] == int(contact)
    assert report.mismatches == []


# -- 7. listings --------------------------------------------------------------------------


def test_a_page_listing_that_shifts_while_it_is_read_is_refused_not_trusted(
    server: JsonServer, proxy: FaultProxy
) -> None:
    adapter = connect(proxy.url, page_size=1)
    proxy.after_forward(
        lambda: httpx.delete(f"{server.url}/contacts/1").raise_for_status(),
        method="GET",
        path="/contacts",
    )
    with pytest.raises(AdapterError, match="went from 3 to 2 records while it was paged"):
        list(adapter.scan(C))


# -- 8. numbers ---------------------------------------------------------------------------


def test_numbers_are_recorded_as_a_javascript_server_holds_them(
    server: JsonServer, proxy: FaultProxy, book: Ledger
) -> None:
    adapter = connect(proxy.url)
    with Run(book, "b1") as run:
        applied, refused = run.apply(
            Target(adapter, C), [update("1", score=90.0), update("2", score=9007199254740993)]
        )
    assert applied.status == "applied" and applied.receipt is not None
    assert applied.receipt.action.after == {"score": 90}  # an int, as json-server holds it
    assert refused.status == "failed" and "'score' holds 9007199254740993" in (refused.error or "")
    assert [path for method, path in proxy.hits if method == "PATCH"] == ["/contacts/1"]
    assert server.records(C)["2"] == SEED["2"]
    assert list(compare_with_target(book, adapter, C, tracked_only=True)) == []  # no drift


def test_an_undeclared_number_model_shows_as_a_conflict_not_a_silent_applied(
    server: JsonServer,
) -> None:
    adapter = connect(server.url, number_model="json")
    (result,) = adapter.write(C, [Write("1", "update", {"score": 90.0})])
    assert (result.outcome, result.field, result.expected, result.actual) == (
        "applied",
        "score",
        90.0,
        90,
    )


def test_a_write_not_normalized_first_is_compared_as_the_server_holds_it(
    server: JsonServer,
) -> None:
    (result,) = connect(server.url).write(C, [Write("1", "update", {"score": 90.0})])
    assert (result.outcome, result.field) == ("applied", None)


# -- 10. lost answers to POSTs ------------------------------------------------------------


def test_a_lost_post_answer_without_idempotency_support_is_warned_as_a_duplicate(
    server: JsonServer, proxy: FaultProxy
) -> None:
    adapter = connect(proxy.url)
    proxy.drop_response_next(method="POST")
    (result,) = adapter.write(C, [Write("new-1", "create", {"name": "Dan"})])
    assert (result.outcome, result.assigned_key) == ("applied", "12")
    assert server.records(C)["11"] == server.records(C)["12"] == {"name": "Dan"}
    (warning,) = adapter.activity.warnings
    assert "11 hold the same values as the record created at 12" in warning


def test_a_lost_post_answer_is_found_by_the_fingerprint_the_record_stores(
    server: JsonServer, proxy: FaultProxy
) -> None:
    route = CollectionRoute("/contacts", assigns_ids=True, fingerprint_field="_ledger", **PAGES)
    adapter = connect(proxy.url, {C: route})
    proxy.drop_response_next(method="POST")
    (result,) = adapter.write(C, [Write("new-1", "create", {"name": "Dan"}, token="fp-1")])
    assert (result.outcome, result.assigned_key) == ("applied", "11")
    assert proxy.count("POST") == 1 and adapter.activity.warnings == []
    assert server.records(C)["11"] == {"name": "Dan", "_ledger": "fp-1"}
    assert adapter.read(C, ["11"]) == {"11": {"name": "Dan"}}  # the adapter's own field, hidden


# -- 11. progress and the run's summary ------------------------------------------------------


def test_a_run_reports_progress_per_write(server: JsonServer, book: Ledger) -> None:
    calls: list[int] = []
    with Run(book, "b1") as run:
        run.apply(
            Target(connect(server.url), C),
            [update(key, score=1) for key in ("1", "10", "2")],
            on_progress=calls.append,
        )
    assert calls == [1, 1, 1]


# -- through the CLI: warnings before the run, the summary, a stopped run -------------------

LISTED = 'assigns_ids = true, listing = "page", page_param = "_page", limit_param = "_limit"'


def toml(tmp_path: Path, url: str, settings: str = "require_conditional = false") -> Path:
    """ledger.toml for json-server as system crm, with contacts and their deals."""
    config = tmp_path / "ledger.toml"
    config.write_text(
        f'[systems.crm]\ntype = "http"\nbase_url = "{url}"\nnumber_model = "javascript"\n'
        f"retry_wait_initial = 0.01\nretry_wait_max = 0.05\n{settings}\n"
        f'collections.contacts = {{ path = "/contacts", {LISTED} }}\n'
        f'collections.deals = {{ path = "/deals", {LISTED}, '
        'parents = { contactId = "contacts" } }\n'
    )
    return config


def changes_file(tmp_path: Path, *changes: tuple[str, dict[str, Any]]) -> str:
    """A JSON Lines file of updates: (entity, values) each."""
    path = tmp_path / "changes.jsonl"
    path.write_text(
        "".join(json.dumps({"entity": e, "op": "update", "set": v}) + "\n" for e, v in changes)
    )
    return str(path)


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    """`ledger` in-process on a fresh SQLite ledger: cli(config, *args)."""
    db = str(tmp_path / "ledger.db")
    assert CliRunner().invoke(main, ["init", "--db", db]).exit_code == 0

    def invoke(config: Path, *args: str) -> Result:
        return CliRunner().invoke(main, [*args, "--db", db, "--config", str(config)])

    return invoke


def test_the_cli_refuses_to_start_on_json_server_unless_best_effort_is_acknowledged(
    tmp_path: Path, server: JsonServer, cli: Callable[..., Result]
) -> None:
    changes = changes_file(tmp_path, ("crm/contacts/1", {"stage": "sql"}))
    apply = ("apply", changes, "--system", "crm", "--batch", "b1")
    required = cli(toml(tmp_path, server.url, ""), *apply)
    assert required.exit_code == 1
    assert "crm/contacts: writes cannot be conditional: it sends only weak ETags" in (
        required.stderr
    )
    assert "Traceback" not in required.output and server.records(C) == SEED

    acknowledged = cli(toml(tmp_path, server.url), *apply)
    assert acknowledged.exit_code == 0, acknowledged.output
    warning = "warning: crm/contacts: writes are best effort, not conditional"
    assert acknowledged.stderr.index(warning) < acknowledged.stderr.index("applying")


def test_the_summary_counts_retries_and_time_spent_waiting(
    tmp_path: Path, proxy: FaultProxy, cli: Callable[..., Result]
) -> None:
    proxy.fail_next(3, 503, method="PATCH")
    changes = changes_file(tmp_path, *((f"crm/contacts/{key}", {"score": 1}) for key in SEED))
    result = cli(
        toml(tmp_path, proxy.url), "apply", changes, "--system", "crm", "--batch", "b1", "--json"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"applied": 3}
    assert summary["retries"] == 3 and summary["waited_seconds"] > 0
    assert summary["elapsed_seconds"] >= summary["waited_seconds"]


def test_a_run_stopped_by_a_failed_read_says_what_had_landed(
    tmp_path: Path, proxy: FaultProxy, cli: Callable[..., Result]
) -> None:
    # The check before the run reads deal 1; the run's own read of it, later, fails.
    proxy.fail_next(100, 503, method="GET", path="/deals/1", skip=1)
    changes = changes_file(
        tmp_path,
        ("crm/contacts/1", {"score": 1}),
        ("crm/contacts/2", {"score": 2}),
        ("crm/deals/1", {"amount": 3}),
    )
    result = cli(toml(tmp_path, proxy.url), "apply", changes, "--system", "crm", "--batch", "b1")
    assert result.exit_code == 1
    assert "this read changed nothing" in result.stderr
    assert "the run stopped after 2 write(s) of batch b1 had landed" in result.stderr
    assert "nothing was changed by it" not in result.stderr


# -- end to end: a batch, outside edits, its rollback and reconciliation ------------------------

CRM = {
    str(n): {"name": name, "stage": "lead", "score": 10 * n}
    for n, name in enumerate(["Ann", "Bo", "Cy", "Di", "Ed", "Flo"], 1)
}


def test_a_batch_outside_edits_rollback_and_reconcile_end_to_end(
    tmp_path: Path, db_url: str, json_server: Callable[[dict[str, Any]], JsonServer]
) -> None:
    server = json_server({C: rows(CRM), "deals": []})
    config = toml(tmp_path, server.url)

    def ledger_cli(*args: str) -> Result:
        return CliRunner().invoke(main, [*args, "--db", db_url], env=env)

    env = {"LEDGER_CONFIG": str(config)}
    assert ledger_cli("init").exit_code == 0
    batch = tmp_path / "lead-sync.jsonl"
    lines = [
        {
            "entity": f"crm/contacts/{k}",
            "op": "update",
            "set": {"stage": "customer", "score": 90.0},
        }
        for k in ("1", "2", "3", "4")
    ] + [{"entity": "crm/contacts/5", "op": "delete"}]
    batch.write_text("".join(json.dumps(line) + "\n" for line in lines))
    applied = ledger_cli("apply", str(batch), "--system", "crm", "--batch", "lead-sync")
    assert applied.exit_code == 0, applied.output
    assert applied.stdout.startswith("batch lead-sync: 5 applied")

    outside(server, "2", stage="churned")  # an edit to a field the batch set
    outside(server, "3", name="Cy B.")  # an edit to a field it did not touch

    planned = ledger_cli("rollback", "plan", "--batch", "lead-sync", "--json")
    assert planned.exit_code == 2, planned.output
    conflicts = [c["entity"] for c in json.loads(planned.stdout)["conflicts"]]
    assert conflicts == ["crm/contacts/2", "crm/contacts/3"]  # skip is record-level

    rolled = ledger_cli("rollback", "apply", "--batch", "lead-sync")
    assert rolled.exit_code == 2, rolled.output  # the conflicts are left for review
    assert "1 re-created, 2 restored, 2 skipped" in rolled.stdout
    assert "verification: verified" in rolled.stdout
    records = server.records(C)
    (new_key,) = set(records) - set(CRM)  # the id json-server chose for the re-created 5
    assert records == {
        "1": CRM["1"],
        "2": {**CRM["2"], "stage": "churned", "score": 90},  # outside edits kept: skipped
        "3": {**CRM["3"], "name": "Cy B.", "stage": "customer", "score": 90},
        "4": CRM["4"],
        "6": CRM["6"],
        new_key: CRM["5"],
    }

    drift = ledger_cli("reconcile", "crm/contacts", "--tracked-only", "--json")
    assert drift.exit_code == 2, drift.output
    report = json.loads(drift.stdout)
    assert [(d["key"], list(d["fields"])) for d in report["samples"]] == [
        ("2", ["stage"]),  # exactly the two outside edits
        ("3", ["name"]),
    ]
    adopted = ledger_cli(
        "reconcile", "crm/contacts", "--tracked-only", "--apply", "--policy", "target"
    )
    assert adopted.exit_code == 0, adopted.output
    clean = ledger_cli("reconcile", "crm/contacts", "--tracked-only")
    assert clean.exit_code == 0 and "clean" in clean.stdout
