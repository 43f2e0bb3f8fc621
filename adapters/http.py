"""The HTTP REST resource adapter: one JSON resource per collection, written compare-and-set
where the server allows it, and honest about where it does not.

Routes, for a collection at ``path`` (see `CollectionRoute`); keys go into URLs percent-encoded
as one path segment (``/`` included), and the record's id field is the key, never a field of
the record dicts this adapter returns:

* ``GET {path}/{key}``: 200 with a JSON object (and an optional ``ETag`` header), or 404.
* ``GET {path}…``: the listing, in the route's paging style (`adapters.http_listing`).
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

Conditional writes. Each write GETs its record, runs `check_expected` on it, then writes with
``If-Match`` set to the record's ETag. Whether that guards anything depends on the server, so
the adapter finds out per collection before its first update or delete (`check_writes`):

* the record's GET carries no ETag, or only a weak one (``W/"…"``: RFC 9110 compares If-Match
  strongly, so a weak tag can never match and is never sent), or the system is declared
  ``conditional_writes = "ignored"``: not conditional;
* otherwise, unless declared ``"honoured"``, a probe: a PATCH of no fields whose If-Match matches
  nothing. 412 means the server honours If-Match; a success means it ignores it.

Where writes are conditional the server compares atomically: no window. A 412 means the record
moved between our GET and our write; the adapter re-reads at once and reports ``stale`` (with
the expected and the actual value) if a field the write relies on changed, or writes again
against the new version if only other fields changed. A record that keeps moving past
``retry_attempts`` is ``stale`` naming the first field that differs between the last two reads; a
412 to the very ETag the server just sent is ``failed`` (it compares ETags in a way no client
can satisfy).

Where they are not, ``require_conditional`` (the default) refuses every update and delete, naming
the reason, and `check_writes` raises so a run refuses to start. With ``require_conditional =
False`` (the user's acknowledgment) the writes are best effort: the GET just before the write
is the narrowest window REST allows, and after each update or delete the adapter reads the record
again and compares every field (the written ones and all others) with what its write should have
left. A difference is an outside value: the write is ``applied`` with its own before-image and
the difference in ``field``/``expected``/``actual``, a conflict for review, never folded into
the before-image. What stays undetectable: an edit to a field the write sets, landing between
the GET and the write, is overwritten — unless the route names a ``version_field`` the server
increments on every write, whose jump by more than one is then reported. A delete or a
PUT-create racing an outside write cannot be checked afterwards.

Retries (`adapters.http_client`): connection failures, timeouts, 408, 429 and 5xx are retried
with backoff, ``Retry-After`` honoured, up to ``retry_attempts``; other 4xx answers are not: the
write is ``failed`` with the status and the response body. `activity` counts requests, retries
and time spent waiting, and collects warnings, for a run's summary; ``on_write`` (when set) is
called with each write's result as it settles, so a caller can show progress per request.

Lost responses: a write whose request may have reached the server (the connection dropped
after sending, a read timeout, a 5xx) may have been applied. Before retrying, the adapter GETs
the record again: if it already holds the written values (deleted, for a delete), the write is
``applied`` and not sent again. When the attempts run out and a last GET cannot settle it, the
outcome is ``unknown``: the run leaves the write pending and `ledger recover` settles it by
reading the system once it answers. A POST to a server that assigns ids cannot be found by the
requested key: every attempt carries the same ``Idempotency-Key`` (the action's fingerprint); a
route with a ``fingerprint_field`` also stores the fingerprint in the record, so a lost POST is
found in the listing instead of sent again. Without either on a server that ignores the header,
a re-sent POST may create a duplicate: the adapter then looks for records holding the same
values and names them in `activity.warnings`.

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
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, cast
from urllib.parse import quote, unquote, urlsplit

import httpx

from adapters import http_listing
from adapters.http_client import Activity, Moved, Retryable, RetryingClient, describe
from adapters.http_routes import LISTINGS, CollectionRoute
from adapters.numbers import NUMBER_MODELS, NumberModel, held, not_held
from ledger.errors import (
    AdapterError,
    ConfigurationError,
    InvalidValue,
    TargetRejected,
    TransientError,
)
from ledger.ports import (
    Record,
    Relation,
    Write,
    WriteResult,
    apply_write,
    check_expected,
    declared_relations,
)
from ledger.values import ABSENT, parse_json, same

__all__ = ["Activity", "CollectionRoute", "Guarantee", "HttpAdapter"]

ConditionalWrites = Literal["probe", "honoured", "ignored"]
CONDITIONAL_WRITES: tuple[ConditionalWrites, ...] = ("probe", "honoured", "ignored")


@dataclass(frozen=True)
class Guarantee:
    """Whether the server makes a collection's writes conditional (honours If-Match), and why."""

    conditional: bool
    reason: str


@dataclass(frozen=True)
class _Fetched:
    """One GET of one record: the record (None if missing), its ETag and its id as held."""

    record: Record | None
    etag: str | None = None
    id: Any = None

    @property
    def strong_etag(self) -> str | None:
        """The ETag if If-Match can use it: a weak one never matches (RFC 9110, 13.1.1)."""
        return self.etag if self.etag and not self.etag.startswith("W/") else None


@dataclass
class _Progress:
    """What one write's attempts have learnt so far."""

    before: Record | None = None
    sent: bool = False  # an attempt's request may have reached the server
    resent_post: bool = False  # a POST was sent again after an answer was lost
    refused_etag: str | None = None  # the ETag a 412 answered


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
        self._base = base_url.rstrip("/")
        self._routes = dict(collections)
        self._page_size = page_size
        self._require = require_conditional
        self._declared = conditional_writes
        self._numbers = number_model
        self._guarantees: dict[str, Guarantee] = {}
        self.on_write: Callable[[WriteResult], None] | None = None

    @property
    def activity(self) -> Activity:
        """Requests, retries and time spent waiting so far, and the warnings noticed."""
        return self._http.activity

    def read(self, collection: str, keys: Sequence[str]) -> dict[str, Record | None]:
        route = self._route(collection)
        return {key: self._http.call(self._fetch, route, key).record for key in keys}

    def scan(self, collection: str) -> Iterator[tuple[str, Record]]:
        route = self._route(collection)
        url = self._base + route.path
        keyed = (self._split(route, url, item) for item in self._listed(route))
        if http_listing.in_key_order(route):
            return http_listing.ordered(keyed, self.system, url)
        return http_listing.gathered(keyed, self.system, url)

    def write(self, collection: str, writes: Sequence[Write]) -> list[WriteResult]:
        route = self._route(collection)
        results: list[WriteResult] = []

        def settled(result: WriteResult) -> None:
            results.append(result)
            if self.on_write is not None:
                self.on_write(result)

        for index, write in enumerate(writes):
            try:
                result = self._write_one(route, collection, write)
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
        self._route(collection)
        return cast(Record, held(values, self._numbers))

    def assigns_keys(self, collection: str) -> bool:
        return self._route(collection).assigns_ids

    def relations(self, collection: str) -> tuple[Relation, ...]:
        return declared_relations(self.system, self._routes, collection)

    def check_writes(self, collection: str, keys: Sequence[str] = ()) -> list[str]:
        """Find out (once per collection) whether writes to it are conditional, before a run
        writes: raises `ConfigurationError` if they must be and are not, else returns the
        warnings to show before the run (none when they are conditional, or when no record
        exists yet to find out on). `keys` are records to look at first."""
        route = self._route(collection)
        guarantee = self._guarantees.get(collection)
        if guarantee is None and self._declared == "ignored":
            guarantee = self._guarantee(route, collection, _Fetched(None))
        if guarantee is None:
            sample = self._sample(route, keys)
            guarantee = self._guarantee(route, collection, sample) if sample else None
        if guarantee is None or guarantee.conditional:
            return []
        if self._require:
            raise ConfigurationError(self._refusal(collection, guarantee))
        return [
            f"{self.system}/{collection}: writes are best effort, not conditional: "
            f"{guarantee.reason}. An outside edit landing between a write's read and the write "
            "itself can be overwritten unseen; outside values found by the read after each "
            "write are reported as conflicts (docs/adapters.md)"
        ]

    def close(self) -> None:
        self._http.close()

    # -- conditional writes -----------------------------------------------------------------

    def _guarantee(
        self, route: CollectionRoute, collection: str, fetched: _Fetched
    ) -> Guarantee | None:
        """The collection's guarantee, found on `fetched` the first time (None while no record
        exists to find it on)."""
        known = self._guarantees.get(collection)
        if known is not None:
            return known
        if self._declared == "ignored":
            found = Guarantee(False, 'the system is declared conditional_writes = "ignored"')
        elif fetched.record is None:
            return None
        elif fetched.etag is None:
            found = Guarantee(False, "its GET answers carry no ETag, so writes cannot use If-Match")
        elif fetched.strong_etag is None:
            found = Guarantee(
                False,
                f"it sends only weak ETags ({fetched.etag}), which If-Match cannot use "
                "(RFC 9110 compares If-Match strongly)",
            )
        elif self._declared == "honoured":
            found = Guarantee(True, 'the system is declared conditional_writes = "honoured"')
        else:
            found = self._probe(route, fetched)
        self._guarantees[collection] = found
        return found

    def _probe(self, route: CollectionRoute, fetched: _Fetched) -> Guarantee:
        """A PATCH of no fields whose If-Match matches nothing: 412 if If-Match is honoured."""
        url = self._url(route, _key_text(fetched.id) or "")
        mismatch = f'"changeledger-probe-{uuid.uuid4().hex}"'
        response = self._http.call(self._http.request, "PATCH", url, {}, {"If-Match": mismatch})
        if response.status_code == 412:
            return Guarantee(True, "it refused a PATCH whose If-Match matched nothing (412)")
        if response.is_success:
            return Guarantee(
                False,
                f"it accepted a PATCH whose If-Match matched nothing ({response.status_code}): "
                "it ignores If-Match",
            )
        return Guarantee(
            False,
            f"it answered {response.status_code} (not 412) to a PATCH whose If-Match matched "
            "nothing",
        )

    def _sample(self, route: CollectionRoute, keys: Sequence[str]) -> _Fetched | None:
        """A record to find the guarantee on: one of `keys`, else the first one listed."""
        for key in keys[:3]:
            fetched = self._http.call(self._fetch, route, key)
            if fetched.record is not None:
                return fetched
        for item in self._listed(route):
            listed = _key_text(item.get(route.id_field)) if isinstance(item, dict) else None
            return self._http.call(self._fetch, route, listed) if listed is not None else None
        return None

    def _refusal(self, collection: str, guarantee: Guarantee) -> str:
        return (
            f"{self.system}/{collection}: writes cannot be conditional: {guarantee.reason}; an "
            "outside edit landing between a write's read and the write would be overwritten "
            "unseen, and require_conditional is on, so nothing was written. Use a server that "
            "honours If-Match with strong ETags, or accept best-effort writes with "
            f"require_conditional = false in [systems.{self.system}] (see docs/adapters.md)"
        )

    # -- one write --------------------------------------------------------------------------

    def _write_one(self, route: CollectionRoute, collection: str, write: Write) -> WriteResult:
        problem = _not_json(write.values) or not_held(write.values, self._numbers)
        if problem is not None:
            return WriteResult(write.key, "failed", error=f"{self.system}: {problem}")
        # Compared as the system holds them (a run has normalized them already).
        write = replace(write, values=held(write.values, self._numbers))
        progress = _Progress()
        try:
            return self._attempts_of(route, collection, write, progress)
        except AdapterError as error:
            if progress.sent:  # a request may have landed: only reading can tell
                return self._unknown(write, progress, str(error))
            if isinstance(error, TransientError):
                raise
            return WriteResult(write.key, "failed", progress.before, error=str(error))

    def _attempts_of(
        self, route: CollectionRoute, collection: str, write: Write, progress: _Progress
    ) -> WriteResult:
        # The same Idempotency-Key on every attempt of this write, in any process.
        token = write.token or uuid.uuid4().hex
        retrying = self._http.retrying()
        try:
            return retrying(self._attempt, route, collection, write, token, progress)
        except Moved:
            now = self._http.call(self._fetch, route, write.key)
            if now.strong_etag == progress.refused_etag:
                return self._refused_own_etag(route, write, now)
            field, was, actual = _first_difference(progress.before, now.record)
            return WriteResult(write.key, "stale", now.record, field, was, actual)
        except Retryable as failure:
            if not progress.sent:
                raise self._http.transient(failure, retrying) from failure
            try:  # one last look: did a request whose answer was lost land after all?
                current = self._fetch(route, write.key).record
                found = self._created_by(route, write, token)
            except (Retryable, AdapterError):
                return self._unknown(write, progress, str(self._http.transient(failure, retrying)))
            if _holds(write, current):
                return WriteResult(write.key, "applied", progress.before)
            if found is not None:
                return WriteResult(write.key, "applied", None, assigned_key=found)
            if self._posted_elsewhere(route, write):
                return self._unknown(write, progress, str(self._http.transient(failure, retrying)))
            progress.sent = False  # read back: it did not land
            raise self._http.transient(failure, retrying) from failure

    def _attempt(
        self,
        route: CollectionRoute,
        collection: str,
        write: Write,
        token: str,
        progress: _Progress,
    ) -> WriteResult:
        """One GET, check and write; a retry starts here again, so it re-reads first."""
        fetched = self._fetch(route, write.key)
        current = fetched.record
        if progress.refused_etag is not None and fetched.strong_etag == progress.refused_etag:
            return self._refused_own_etag(route, write, fetched)
        if progress.sent:
            if _holds(write, current):
                return WriteResult(write.key, "applied", progress.before)  # the lost write landed
            found = self._created_by(route, write, token)
            if found is not None:
                return WriteResult(write.key, "applied", None, assigned_key=found)
            progress.resent_post = self._posted_elsewhere(route, write)
        refused = check_expected(write.key, write, current)
        if refused is not None:
            return refused
        guarantee = self._guarantee(route, collection, fetched)
        etag = fetched.strong_etag
        if write.operation != "create" and self._require:
            if guarantee is not None and not guarantee.conditional:
                return WriteResult(
                    write.key, "failed", current, error=self._refusal(collection, guarantee)
                )
            if etag is None:
                return WriteResult(
                    write.key,
                    "failed",
                    current,
                    error=(
                        f"{self.system}: GET {self._url(route, write.key)} gave no strong ETag, so "
                        "this write cannot be conditional and require_conditional is on"
                    ),
                )
        progress.before = current
        try:
            response = self._send(route, write, fetched, etag, token)
        except Retryable as failure:
            progress.sent = progress.sent or failure.sent
            raise
        guarded = etag is not None and guarantee is not None and guarantee.conditional
        return self._settle(route, write, response, progress, etag, confirm=not guarded)

    def _send(
        self,
        route: CollectionRoute,
        write: Write,
        fetched: _Fetched,
        etag: str | None,
        token: str,
    ) -> httpx.Response:
        url = self._url(route, write.key)
        guard = {"If-Match": etag} if etag is not None else {}
        if write.operation == "delete":
            return self._http.request("DELETE", url, headers=guard)
        if write.operation == "update" and write.unset:
            whole = apply_write(write, fetched.record) or {}
            return self._http.request("PUT", url, {**whole, route.id_field: fetched.id}, guard)
        if write.operation == "update":
            return self._http.request("PATCH", url, write.values, guard)
        body = dict(write.values)
        if not route.assigns_ids:
            body[route.id_field] = write.key
        if route.fingerprint_field:
            body[route.fingerprint_field] = token
        if route.put_create:
            return self._http.request("PUT", url, body, {"If-None-Match": "*"})
        once = {route.idempotency_header: token} if route.idempotency_header else {}
        return self._http.request("POST", self._base + route.path, body, once)

    def _settle(
        self,
        route: CollectionRoute,
        write: Write,
        response: httpx.Response,
        progress: _Progress,
        etag: str | None,
        *,
        confirm: bool,
    ) -> WriteResult:
        """The result of a write the server answered without a transient failure."""
        method, url = response.request.method, str(response.request.url)
        status = response.status_code
        if response.is_success:
            assigned = self._assigned_key(route, write, response)
            if progress.resent_post:
                self._warn_twins(route, write, assigned)
            if confirm and write.operation != "create":
                return self._confirm(route, write, progress.before)
            return WriteResult(write.key, "applied", progress.before, assigned_key=assigned)
        if status == 412:
            progress.refused_etag = etag
            raise Moved(method, url, "412 Precondition Failed", sent=False)
        if status in (404, 409):
            current = self._fetch(route, write.key).record
            if progress.sent and _holds(write, current):
                return WriteResult(write.key, "applied", progress.before)
            refused = check_expected(write.key, write, current)
            if refused is not None:
                return refused
        error = f"{self.system}: {method} {url} was refused: {describe(response)}"
        return WriteResult(write.key, "failed", progress.before, error=error)

    def _confirm(self, route: CollectionRoute, write: Write, before: Record | None) -> WriteResult:
        """After an unguarded write: read the record again and compare every field with what
        the write should have left; an outside value is a conflict, not a before-image."""
        expected = apply_write(write, before)
        version = route.version_field
        if expected is not None and version and type(expected.get(version)) is int:
            expected[version] += 1
        try:
            now = self._http.call(self._fetch, route, write.key).record
        except AdapterError as error:
            self.activity.warnings.append(
                f"{self.system}: {write.operation} of {write.key} applied, but the read to "
                f"confirm it failed ({error}): reconcile to check for outside edits"
            )
            return WriteResult(write.key, "applied", before)
        if (expected is None and now is None) or same(now, expected):
            return WriteResult(write.key, "applied", before)
        field, wanted, actual = _first_difference(expected, now)
        return WriteResult(write.key, "applied", before, field, wanted, actual)

    def _refused_own_etag(
        self, route: CollectionRoute, write: Write, fetched: _Fetched
    ) -> WriteResult:
        """A 412 to the very ETag the server sends for the record: not a race, a server that
        compares ETags in a way no client can satisfy (retrying would only repeat it)."""
        error = (
            f"{self.system}: {write.operation} of {self._url(route, write.key)} was refused "
            f"(412) with the ETag the server sends for it ({fetched.etag}): it compares ETags "
            "in a way no client can satisfy"
        )
        return WriteResult(write.key, "failed", fetched.record, error=error)

    def _unknown(self, write: Write, progress: _Progress, reason: str) -> WriteResult:
        return WriteResult(
            write.key,
            "unknown",
            progress.before,
            error=(
                f"{reason}; whether the write landed is unknown: it stays pending until "
                "`ledger recover` (or a rerun of the batch) reads the system"
            ),
        )

    def _posted_elsewhere(self, route: CollectionRoute, write: Write) -> bool:
        """A POST whose record the server may have stored under a key of its own."""
        return write.operation == "create" and route.assigns_ids and not route.put_create

    def _created_by(self, route: CollectionRoute, write: Write, token: str) -> str | None:
        """The key of the record a lost POST created, found by the fingerprint it stored."""
        if not (self._posted_elsewhere(route, write) and route.fingerprint_field):
            return None
        for item in self._listed(route):
            if isinstance(item, dict) and item.get(route.fingerprint_field) == token:
                return _key_text(item.get(route.id_field))
        return None

    def _warn_twins(self, route: CollectionRoute, write: Write, assigned: str | None) -> None:
        """After a POST was sent again: name other records holding the same values."""
        url = self._base + route.path
        twins = [
            key
            for key, record in (self._split(route, url, item) for item in self._listed(route))
            if key != assigned and same(record, write.values)
        ]
        if twins:
            self.activity.warnings.append(
                f"{self.system}: the answer to the POST creating {write.key} was lost and the "
                f"POST sent again; {', '.join(twins)} hold the same values as the record "
                f"created at {assigned}: a duplicate if {self.system} does not honour "
                "Idempotency-Key; check and delete the extra one (or set the route's "
                "fingerprint_field)"
            )

    def _assigned_key(
        self, route: CollectionRoute, write: Write, response: httpx.Response
    ) -> str | None:
        if write.operation != "create":
            return None
        assigned: str | None = None
        try:
            body = json.loads(response.content) if response.content else None
        except ValueError:
            body = None
        if isinstance(body, dict):
            assigned = _key_text(body.get(route.id_field))
        location = response.headers.get("Location")
        if assigned is None and location:
            assigned = unquote(urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1])
        return assigned if assigned is not None and assigned != write.key else None

    # -- requests ---------------------------------------------------------------------------

    def _fetch(self, route: CollectionRoute, key: str) -> _Fetched:
        """One GET of one record."""
        url = self._url(route, key)
        response = self._http.request("GET", url)
        if response.status_code == 404:
            return _Fetched(None)
        if not response.is_success:
            raise TargetRejected(f"{self.system}: GET {url} was refused: {describe(response)}")
        body = self._parse(url, response)
        if not isinstance(body, dict):
            raise AdapterError(f"{self.system}: GET {url} did not return a JSON object")
        held_id = body.pop(route.id_field, key)
        if route.fingerprint_field:
            body.pop(route.fingerprint_field, None)
        return _Fetched(body, response.headers.get("ETag"), held_id)

    def _listed(self, route: CollectionRoute) -> Iterator[Any]:
        url = self._base + route.path
        return http_listing.items(
            route, url, self._page_size, self._list_page, self._parse, self.system
        )

    def _list_page(self, url: str, params: dict[str, str] | None) -> httpx.Response:
        response = self._http.call(self._http.request, "GET", url, None, None, params)
        if not response.is_success:
            raise TargetRejected(f"{self.system}: GET {url} was refused: {describe(response)}")
        return response

    def _split(self, route: CollectionRoute, url: str, item: Any) -> tuple[str, Record]:
        key = _key_text(item.get(route.id_field)) if isinstance(item, dict) else None
        if key is None:
            raise AdapterError(
                f"{self.system}: GET {url} listed an item without a text or integer "
                f"{route.id_field!r}; check the route's id_field"
            )
        hidden = (route.id_field, route.fingerprint_field)
        return key, {name: value for name, value in item.items() if name not in hidden}

    def _parse(self, url: str, response: httpx.Response) -> Any:
        try:
            return parse_json(response.content, where=f"{self.system} {url}")
        except InvalidValue as error:
            raise AdapterError(
                f"{self.system}: GET {url} returned unreadable JSON: {error}"
            ) from None

    def _route(self, collection: str) -> CollectionRoute:
        try:
            return self._routes[collection]
        except KeyError:
            raise ConfigurationError(
                f"{self.system}: no route for collection {collection!r}; "
                f"add it to the adapter's collections (known: {sorted(self._routes)})"
            ) from None

    def _url(self, route: CollectionRoute, key: str) -> str:
        return f"{self._base}{route.path}/{quote(key, safe='')}"


def _one_of(where: str, name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigurationError(f"{where}: {name} {value!r} is not one of {', '.join(allowed)}")


def _holds(write: Write, current: Record | None) -> bool:
    """Whether the record already shows `write`'s effect (a lost response's write landed)."""
    if write.operation == "delete":
        return current is None
    if current is None:
        return False
    return all(
        same(current.get(name, ABSENT), value) for name, value in write.values.items()
    ) and not any(name in current for name in write.unset)


def _first_difference(was: Record | None, now: Record | None) -> tuple[str, Any, Any]:
    """The first field whose value differs, with both values; ``(record)`` for existence."""
    if was is None or now is None:
        return "(record)", ABSENT if was is None else "exists", ABSENT if now is None else "exists"
    for name in [*was, *(name for name in now if name not in was)]:
        if not same(was.get(name, ABSENT), now.get(name, ABSENT)):
            return name, was.get(name, ABSENT), now.get(name, ABSENT)
    return "(record)", was, now  # only the server's version moved


def _key_text(value: Any) -> str | None:
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    return None


def _not_json(value: Any, where: str = "") -> str | None:
    """Why `value` cannot travel as JSON and come back as itself, or None if it can."""
    kind = type(value)
    if kind in (str, int, bool, type(None)):
        return None
    if kind is float:
        return None if math.isfinite(value) else f"field {where!r} is {value!r}, not JSON"
    if kind is list:
        return next(
            (p for i, item in enumerate(value) if (p := _not_json(item, f"{where}[{i}]"))), None
        )
    if kind is dict:
        for name, item in value.items():
            if type(name) is not str:
                return f"field {where!r} has a key {name!r} that is not text"
            problem = _not_json(item, f"{where}.{name}" if where else name)
            if problem is not None:
                return problem
        return None
    return (
        f"field {where!r} holds a {kind.__name__} ({value!r}), which JSON cannot carry "
        "exactly; convert it to text or a number before writing"
    )
