"""The HTTP REST resource adapter: one JSON resource per collection, written compare-and-set
where the server allows it, and honest about where it does not.

Routes, for a collection at ``path`` (see `CollectionRoute`); keys go into URLs percent-encoded
as one path segment (``/`` included), and the record's id field is the key, never a field of
the record dicts this adapter returns:

* ``GET {path}/{key}``: 200 with a JSON object (and an optional ``ETag`` header), or 404.
* ``GET {path}…``: the listing, in the route's paging style (`adapters.http.listing`).
* ``POST {path}`` creates. A route that ``assigns_ids`` sends no id: the server's own id comes
  back in the response body's id field or in ``Location`` and the result carries it as
  ``assigned_key``. Otherwise the body's id field holds the requested key. With ``put_create``
  the route creates by ``PUT {path}/{key}`` with ``If-None-Match: *`` instead.
* ``PATCH {path}/{key}`` sets the written fields (JSON null is null). REST has no verb for
  removing a field, so a write that unsets fields sends ``PUT {path}/{key}``: the whole record
  as read (its id as the server holds it), minus the unset fields, plus the written values.
* ``DELETE {path}/{key}``.

Reads: plain REST has no bulk GET, so `read` sends one GET per key, in order, over the client's
pool of keep-alive connections.

Conditional writes: whether the server honours ``If-Match`` is found out per collection before
its first update or delete (`check_writes`, `adapters.http.probe`); where it does, writes are
compare-and-set with no window; where it does not, ``require_conditional`` (the default) refuses
updates and deletes, and ``require_conditional = false`` makes them best effort, each confirmed
by a read afterwards. One write's GET, compare, If-Match and Idempotency-Key, its 412s and lost
responses: `adapters.http.writes`. Reads and listings: `adapters.http.resource`. Retries
(`adapters.http.client`): connection failures, timeouts, 408, 429 and 5xx, with backoff,
``Retry-After`` honoured, up to ``retry_attempts``; `activity` counts requests, retries and time
spent waiting, and collects warnings, for a run's summary; ``on_write`` (when set) is called
with each write's result as it settles, so a caller can show progress per request.

Batches: REST writes one record per request, so `write` sends its writes one after another.
`TransientError` is raised only while nothing of the batch has been (or may have been) applied;
after that, the write that could not get through and every later one are ``failed`` (not
attempted).

Connections: the adapter's own `httpx.Client` (``timeout`` seconds per request) is closed by
`close`; a ``client`` passed in is its owner's. ``sleep`` is how retries wait.

Types: JSON carries text, integers of any size, floats, booleans, null, lists and objects, and
they come back as the same Python types. JSON cannot carry Decimal, dates, times, UUIDs or bytes:
a write holding one is ``failed`` before any request, naming the field. ``number_model =
"javascript"`` declares a server holding numbers as doubles (`adapters.numbers`): `normalize`
turns ``90.0`` into ``90`` before the ledger records it, and an integer a double cannot hold is
``failed`` before any request, naming the field.

This package is the adapter's public face: `HttpAdapter`, `CollectionRoute`, `Guarantee`,
`Activity`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import httpx

from adapters.http.client import Activity, RetryingClient
from adapters.http.probe import CONDITIONAL_WRITES, ConditionalWrites, Conditions, Guarantee
from adapters.http.resource import Resources
from adapters.http.routes import LISTINGS, CollectionRoute
from adapters.http.writes import Writer
from adapters.numbers import NUMBER_MODELS, NumberModel, held
from ledger.errors import ConfigurationError, TransientError
from ledger.ports import Record, Relation, Write, WriteResult, declared_relations

__all__ = ["Activity", "CollectionRoute", "ConditionalWrites", "Guarantee", "HttpAdapter"]


class HttpAdapter:
    """A REST API as an adapter; see the module docstring for the routes and guarantees."""

    def __init__(
        self,
        system: str,
        base_url: str,
        collections: dict[str, CollectionRoute],
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        retry_attempts: int = 5,
        retry_wait_initial: float = 0.05,
        retry_wait_max: float = 2.0,
        page_size: int = 200,
        require_conditional: bool = True,
        conditional_writes: ConditionalWrites = "probe",
        number_model: NumberModel = "json",
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if page_size < 1:
            raise ConfigurationError(f"{system}: page_size must be at least 1")
        _one_of(system, "conditional_writes", conditional_writes, CONDITIONAL_WRITES)
        _one_of(system, "number_model", number_model, NUMBER_MODELS)
        for name, route in collections.items():
            _one_of(f"{system}/{name}", "listing", route.listing, LISTINGS)
        self.system = system
        self._http = RetryingClient(
            system,
            headers=headers,
            timeout=timeout,
            retry_attempts=retry_attempts,
            retry_wait_initial=retry_wait_initial,
            retry_wait_max=retry_wait_max,
            client=client,
            sleep=sleep,
        )
        self._resources = Resources(system, self._http, base_url, dict(collections), page_size)
        self._conditions = Conditions(
            self._resources, require=require_conditional, declared=conditional_writes
        )
        self._numbers = number_model
        self._writer = Writer(self._resources, self._conditions, number_model)
        self.on_write: Callable[[WriteResult], None] | None = None

    @property
    def activity(self) -> Activity:
        """Requests, retries and time spent waiting so far, and the warnings noticed."""
        return self._http.activity

    def read(self, collection: str, keys: Sequence[str]) -> dict[str, Record | None]:
        resources = self._resources
        route = resources.route(collection)
        return {key: self._http.call(resources.fetch, route, key).record for key in keys}

    def scan(self, collection: str) -> Iterator[tuple[str, Record]]:
        return self._resources.scan(self._resources.route(collection))

    def write(self, collection: str, writes: Sequence[Write]) -> list[WriteResult]:
        """One request per write, in order. `TransientError` only while nothing of the batch
        has (or may have) landed; after that, the write that could not get through and every
        later one are ``failed`` (not attempted)."""
        route = self._resources.route(collection)
        results: list[WriteResult] = []

        def settled(result: WriteResult) -> None:
            results.append(result)
            if self.on_write is not None:
                self.on_write(result)

        for index, write in enumerate(writes):
            try:
                result = self._writer.write(route, collection, write)
            except TransientError as error:
                if not any(r.outcome in ("applied", "unknown") for r in results):
                    raise
                settled(WriteResult(write.key, "failed", error=str(error)))
                stopped = f"not attempted: {error}"
            else:
                settled(result)
                if result.outcome != "unknown":
                    continue
                stopped = f"not attempted: {self.system} stopped answering ({result.error})"
            for later in writes[index + 1 :]:
                settled(WriteResult(later.key, "failed", error=stopped))
            break
        return results

    def normalize(self, collection: str, values: Record) -> Record:
        self._resources.route(collection)
        return cast(Record, held(values, self._numbers))

    def assigns_keys(self, collection: str) -> bool:
        return self._resources.route(collection).assigns_ids

    def relations(self, collection: str) -> tuple[Relation, ...]:
        return declared_relations(self.system, self._resources.routes, collection)

    def check_writes(self, collection: str, keys: Sequence[str] = ()) -> list[str]:
        """Find out (once per collection) whether writes to it are conditional, before a run
        writes: raises `ConfigurationError` if they must be and are not, else returns the
        warnings to show before the run (none when they are conditional, or when no record
        exists yet to find out on). `keys` are records to look at first."""
        return self._conditions.check(collection, keys)

    def close(self) -> None:
        self._http.close()


def _one_of(where: str, name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigurationError(f"{where}: {name} {value!r} is not one of {', '.join(allowed)}")
