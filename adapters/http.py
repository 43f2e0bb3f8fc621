"""The HTTP REST resource adapter: one JSON resource per collection, written compare-and-set.

Routes, for a collection at ``path`` (see `CollectionRoute`); keys go into URLs percent-encoded
as one path segment (``/`` included), and the record's id field is the key, never a field of
the record dicts this adapter returns:

* ``GET {path}/{key}``: 200 with a JSON object (and an optional ``ETag`` header), or 404.
* ``GET {path}?limit=N&after=KEY``: a page ``{"items": [...], "next": KEY or null}`` of objects
  holding their id field, in ascending order of key text (as Python compares str), starting
  after ``after``; ``next`` is passed back as ``after`` for the next page. The parameter and
  field names are set per route. `scan` holds one page at a time and refuses a server whose
  keys do not ascend. A page is read as one JSON value under the ledger's value budget
  (`ledger.values.MAX_BYTES`): lower ``page_size`` for very wide records.
* ``POST {path}`` creates, with the requested key in the body's id field so that servers that
  accept client ids keep it; a server that assigns its own id reports it in the response body's
  id field or in ``Location``, and the write result carries it as ``assigned_key`` (declare
  such a route ``assigns_ids``, so a rollback plan says that re-created records come back under
  new keys). With ``put_create`` the route creates by ``PUT {path}/{key}`` with
  ``If-None-Match: *`` instead.
* ``PATCH {path}/{key}`` sets the written fields (JSON null is null). REST has no verb for
  removing a field, so a write that unsets fields sends ``PUT {path}/{key}``: the whole record
  as read, minus the unset fields, plus the written values.
* ``DELETE {path}/{key}``.

Reads: plain REST has no bulk GET, so `read` sends one GET per key, in order, over the client's
pool of keep-alive connections (no handshake per key).

Compare-and-set. Each write GETs its record, runs `check_expected` on it, then writes:

* When the server sent an ETag, the write carries ``If-Match`` and the server compares
  atomically: no window. A 412 means the record moved between our GET and our write; the
  adapter re-reads at once, and reports ``stale`` (with the expected and the actual value) if a
  field the write relies on changed, or writes again against the new version if only other
  fields changed (what every adapter does: the contract is about the expected fields). A record
  that keeps moving past ``retry_attempts`` is reported ``stale`` naming the first field that
  differs between the last two reads.
* Without ETags the GET is the re-read right before the write, and one window is left: between
  the server answering that GET and it applying the write. An edit landing there is not seen:
  to the written fields it is overwritten; to other fields the write relied on, the write
  proceeds on a premise no longer true; a PUT (unsetting fields) also overwrites edits to any
  other field. Prefer servers that serve ETags.
* Creates: ``If-None-Match: *`` closes the window for PUT-create; a POST relies on the server
  refusing an existing id (409), which is then re-read and reported ``stale``.
* A 404 or 409 answer to a write is re-read: ``stale`` if the record moved, else ``failed``
  (a 409 may be a uniqueness constraint on another field, not a race).

Retries: connection failures, timeouts, 408, 429 and 5xx are retried with exponential backoff and
full jitter (``retry_wait_initial`` doubling, capped at ``retry_wait_max``), for up to
``retry_attempts`` attempts. A ``Retry-After`` no longer than ``retry_wait_max`` is waited as
asked; a longer one ends the retries at once. Then `TransientError` names the system, method,
URL and last status. Other 4xx answers are not retried: the write is ``failed`` with the status
and the response body.

Lost responses: a write whose request may have reached the server (the connection dropped
after sending, a read timeout, a 5xx) may have been applied. Before retrying, the adapter
GETs the record again: if it already holds the written values (deleted, for a delete), the
write is reported ``applied`` and not sent again; otherwise it is checked and written afresh.
A POST to a server that assigns its own ids cannot be found by the requested key, so every
attempt of one POST carries the same ``Idempotency-Key`` header (the write's ``token``: the
action's fingerprint, so a retry from another process after a crash carries it too); a server
that neither keeps client ids nor honours that header may create a duplicate when a POST
response is lost.
If the attempts run out after such an ambiguous failure and a last GET cannot settle it,
the `TransientError` says the write may have been applied.

Batches: REST writes one record per request, so `write` sends its writes one after another.
`TransientError` is raised only while nothing of the batch has been applied; after that, the
write that could not get through and every later one are reported ``failed`` (not attempted).

Connections: the adapter's own `httpx.Client` (``timeout`` seconds per request) is closed by
`close`; a ``client`` passed in is its owner's to configure and to close. ``sleep`` is how
retries wait (tests pass a recorder).

Types: JSON carries text, integers of any size, floats, booleans, null, lists and objects, and
they come back as the same Python types (a number written with a fraction stays a float, and
one a float cannot hold exactly is read as a Decimal with every digit). JSON cannot carry
Decimal, dates, times, UUIDs or bytes: a write holding one is ``failed`` before any request,
naming the field (convert it to text or a number first). A field absent from the record is
distinct from a field holding null.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from adapters.protocol import (
    Record,
    Relation,
    Write,
    WriteResult,
    apply_write,
    check_expected,
    declared_relations,
)
from ledger.errors import (
    AdapterError,
    ConfigurationError,
    InvalidValue,
    TargetRejected,
    TransientError,
)
from ledger.values import ABSENT, parse_json, same

__all__ = ["CollectionRoute", "HttpAdapter"]

T = TypeVar("T")
_BODY_SHOWN = 2000  # characters of a refusal's response body kept in the error


@dataclass(frozen=True)
class CollectionRoute:
    """Where a collection lives on the server and how its pages and ids are named."""

    path: str
    id_field: str = "id"
    put_create: bool = False
    assigns_ids: bool = False
    parents: Mapping[str, str] = field(default_factory=dict)  # field -> parent collection
    limit_param: str = "limit"
    after_param: str = "after"
    items_field: str = "items"
    next_field: str = "next"
    idempotency_header: str | None = "Idempotency-Key"


class _Retryable(Exception):
    """A failure worth another attempt; ``sent`` when the request may have reached the server."""

    def __init__(
        self, method: str, url: str, reason: str, *, sent: bool, retry_after: float | None = None
    ):
        super().__init__(f"{method} {url}: {reason}")
        self.method = method
        self.url = url
        self.reason = reason
        self.sent = sent
        self.retry_after = retry_after


class _Moved(_Retryable):
    """412: the record changed between our GET and our write; re-read at once, no backoff."""


@dataclass
class _Progress:
    """What one write's attempts have learnt so far."""

    before: Record | None = None
    sent: bool = False  # an attempt's request may have reached the server


class _StopOnLongRetryAfter(stop_base):
    """Stop when the server asks for a longer wait than we are willing to spend."""

    def __init__(self, limit: float):
        self.limit = limit

    def __call__(self, retry_state: RetryCallState) -> bool:
        failure = _failure(retry_state)
        return failure is not None and (failure.retry_after or 0.0) > self.limit


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
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if retry_attempts < 1:
            raise ConfigurationError(f"{system}: retry_attempts must be at least 1")
        if page_size < 1:
            raise ConfigurationError(f"{system}: page_size must be at least 1")
        self.system = system
        self._base = base_url.rstrip("/")
        self._routes = dict(collections)
        self._headers = {"Accept": "application/json", **(headers or {})}
        self._attempts = retry_attempts
        self._backoff = wait_random_exponential(multiplier=retry_wait_initial, max=retry_wait_max)
        self._wait_max = retry_wait_max
        self._page_size = page_size
        self._sleep = sleep
        # An injected client is its owner's to configure (timeout included) and to close.
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout)

    def read(self, collection: str, keys: Sequence[str]) -> dict[str, Record | None]:
        route = self._route(collection)
        return {key: self._call(self._get, route, key)[0] for key in keys}

    def scan(self, collection: str) -> Iterator[tuple[str, Record]]:
        route = self._route(collection)
        url = self._base + route.path
        after: str | None = None
        last: str | None = None
        while True:
            params = {route.limit_param: str(self._page_size)}
            if after is not None:
                params[route.after_param] = after
            items, cursor = self._call(self._page, route, url, params)
            for item in items:
                key, record = self._split(route, url, item)
                if last is not None and key <= last:
                    raise AdapterError(
                        f"{self.system}: GET {url} listed {key!r} after {last!r}; scan needs "
                        "pages in ascending key-text order, so check the server's sort"
                    )
                last = key
                yield key, record
            if cursor is None:
                return
            if cursor == after:
                raise AdapterError(f"{self.system}: GET {url} returned the same page cursor twice")
            after = cursor

    def write(self, collection: str, writes: Sequence[Write]) -> list[WriteResult]:
        route = self._route(collection)
        results: list[WriteResult] = []
        for index, write in enumerate(writes):
            try:
                results.append(self._write_one(route, write))
            except TransientError as error:
                if not any(result.outcome == "applied" for result in results):
                    raise
                results.append(WriteResult(write.key, "failed", error=str(error)))
                results.extend(
                    WriteResult(later.key, "failed", error=f"not attempted: {error}")
                    for later in writes[index + 1 :]
                )
                break
        return results

    def normalize(self, collection: str, values: Record) -> Record:
        return values  # stored as given

    def assigns_keys(self, collection: str) -> bool:
        return self._route(collection).assigns_ids

    def relations(self, collection: str) -> tuple[Relation, ...]:
        return declared_relations(self.system, self._routes, collection)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # -- one write --------------------------------------------------------------------------

    def _write_one(self, route: CollectionRoute, write: Write) -> WriteResult:
        problem = _not_json(write.values)
        if problem is not None:
            return WriteResult(write.key, "failed", error=f"{self.system}: {problem}")
        progress = _Progress()
        try:
            return self._attempts_of(route, write, progress)
        except TransientError:
            raise
        except AdapterError as error:  # refused or unreadable: this write only
            return WriteResult(write.key, "failed", progress.before, error=str(error))

    def _attempts_of(
        self, route: CollectionRoute, write: Write, progress: _Progress
    ) -> WriteResult:
        # The same Idempotency-Key on every attempt of this write, in any process.
        token = write.token or uuid.uuid4().hex
        retrying = self._retrying()
        try:
            return retrying(self._attempt, route, write, token, progress)
        except _Moved:
            now, _ = self._call(self._get, route, write.key)
            field, was, actual = _first_difference(progress.before, now)
            return WriteResult(write.key, "stale", now, field, was, actual)
        except _Retryable as failure:
            if not progress.sent:
                raise self._transient(failure, retrying) from failure
            try:  # one last look: did a request whose answer was lost land after all?
                current, _ = self._get(route, write.key)
            except _Retryable:
                raise self._transient(failure, retrying, in_doubt=True) from failure
            if _holds(write, current):
                return WriteResult(write.key, "applied", progress.before)
            posted = write.operation == "create" and not route.put_create  # may hide elsewhere
            raise self._transient(failure, retrying, in_doubt=posted) from failure

    def _attempt(
        self, route: CollectionRoute, write: Write, token: str, progress: _Progress
    ) -> WriteResult:
        """One GET, check and write; a retry starts here again, so it re-reads first."""
        current, etag = self._get(route, write.key)
        if progress.sent and _holds(write, current):
            return WriteResult(write.key, "applied", progress.before)  # the lost write landed
        refused = check_expected(write.key, write, current)
        if refused is not None:
            return refused
        progress.before = current
        try:
            response = self._send(route, write, current, etag, token)
        except _Retryable as failure:
            progress.sent = progress.sent or failure.sent
            raise
        return self._settle(route, write, response, progress)

    def _send(
        self,
        route: CollectionRoute,
        write: Write,
        current: Record | None,
        etag: str | None,
        token: str,
    ) -> httpx.Response:
        url = self._url(route, write.key)
        guard = {"If-Match": etag} if etag is not None else {}
        if write.operation == "delete":
            return self._request("DELETE", url, headers=guard)
        if write.operation == "update" and write.unset:
            whole = apply_write(write, current) or {}
            return self._request("PUT", url, {**whole, route.id_field: write.key}, guard)
        if write.operation == "update":
            return self._request("PATCH", url, write.values, guard)
        body = {**write.values, route.id_field: write.key}
        if route.put_create:
            return self._request("PUT", url, body, {"If-None-Match": "*"})
        once = {route.idempotency_header: token} if route.idempotency_header else {}
        return self._request("POST", self._base + route.path, body, once)

    def _settle(
        self, route: CollectionRoute, write: Write, response: httpx.Response, progress: _Progress
    ) -> WriteResult:
        """The result of a write the server answered without a transient failure."""
        method, url = response.request.method, str(response.request.url)
        status = response.status_code
        if response.is_success:
            assigned = self._assigned_key(route, write, response)
            return WriteResult(write.key, "applied", progress.before, assigned_key=assigned)
        if status == 412:
            raise _Moved(method, url, "412 Precondition Failed", sent=False)
        if status in (404, 409):
            current, _ = self._get(route, write.key)
            if progress.sent and _holds(write, current):
                return WriteResult(write.key, "applied", progress.before)
            refused = check_expected(write.key, write, current)
            if refused is not None:
                return refused
        error = f"{self.system}: {method} {url} was refused: {_describe(response)}"
        return WriteResult(write.key, "failed", progress.before, error=error)

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

    def _get(self, route: CollectionRoute, key: str) -> tuple[Record | None, str | None]:
        """One GET of one record: (record or None, ETag or None)."""
        url = self._url(route, key)
        response = self._request("GET", url)
        if response.status_code == 404:
            return None, None
        if not response.is_success:
            raise TargetRejected(f"{self.system}: GET {url} was refused: {_describe(response)}")
        body = self._parse(url, response)
        if not isinstance(body, dict):
            raise AdapterError(f"{self.system}: GET {url} did not return a JSON object")
        body.pop(route.id_field, None)
        return body, response.headers.get("ETag")

    def _page(
        self, route: CollectionRoute, url: str, params: dict[str, str]
    ) -> tuple[list[Any], str | None]:
        response = self._request("GET", url, params=params)
        if not response.is_success:
            raise TargetRejected(f"{self.system}: GET {url} was refused: {_describe(response)}")
        page = self._parse(url, response)
        items = page.get(route.items_field) if isinstance(page, dict) else None
        if not isinstance(items, list):
            raise AdapterError(
                f"{self.system}: GET {url} did not return an object with a list "
                f"{route.items_field!r}; check the route's items_field"
            )
        return items, _key_text(page.get(route.next_field))

    def _split(self, route: CollectionRoute, url: str, item: Any) -> tuple[str, Record]:
        key = _key_text(item.get(route.id_field)) if isinstance(item, dict) else None
        if key is None:
            raise AdapterError(
                f"{self.system}: GET {url} listed an item without a text or integer "
                f"{route.id_field!r}; check the route's id_field"
            )
        return key, {name: value for name, value in item.items() if name != route.id_field}

    def _parse(self, url: str, response: httpx.Response) -> Any:
        try:
            return parse_json(response.content, where=f"{self.system} {url}")
        except InvalidValue as error:
            raise AdapterError(
                f"{self.system}: GET {url} returned unreadable JSON: {error}"
            ) from None

    def _request(
        self,
        method: str,
        url: str,
        body: Record | None = None,
        headers: dict[str, str] | None = None,
        *,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request; raises `_Retryable` for what is worth another attempt."""
        sending = {**self._headers, **(headers or {})}
        content = None
        if body is not None:
            try:
                content = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
            except (TypeError, ValueError) as error:  # e.g. a Decimal read back for a PUT
                raise AdapterError(f"{self.system}: {method} {url}: {error}") from None
            sending["Content-Type"] = "application/json"
        try:
            response = self._client.request(
                method, url, content=content, headers=sending, params=params
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise _Retryable(method, url, f"could not connect ({error})", sent=False) from error
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as error:
            reason = f"{type(error).__name__}: {error}"
            raise _Retryable(method, url, reason, sent=method != "GET") from error
        status = response.status_code
        if status in (408, 429) or status >= 500:
            raise _Retryable(
                method,
                url,
                _describe(response),
                sent=status >= 500 and method != "GET",
                retry_after=_retry_after(response),
            )
        return response

    # -- retries ----------------------------------------------------------------------------

    def _retrying(self) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(self._attempts) | _StopOnLongRetryAfter(self._wait_max),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            reraise=True,
        )

    def _wait(self, retry_state: RetryCallState) -> float:
        failure = _failure(retry_state)
        if isinstance(failure, _Moved):
            return 0.0
        if failure is not None and failure.retry_after is not None:
            return failure.retry_after
        return float(self._backoff(retry_state))

    def _call(self, function: Callable[..., T], *args: Any) -> T:
        """An idempotent request function, retried; `TransientError` once attempts run out."""
        retrying = self._retrying()
        try:
            return retrying(function, *args)
        except _Retryable as failure:
            raise self._transient(failure, retrying) from failure

    def _transient(
        self, failure: _Retryable, retrying: Retrying, *, in_doubt: bool = False
    ) -> TransientError:
        attempts = retrying.statistics.get("attempt_number", 1)
        waited = ""
        if failure.retry_after is not None and failure.retry_after > self._wait_max:
            waited = f" (the server asked to wait {failure.retry_after:g}s)"
        outcome = (
            "the write may have been applied: read the record before writing it again"
            if in_doubt
            else "nothing was changed by it"
        )
        return TransientError(
            f"{self.system}: {failure.method} {failure.url} failed after {attempts} "
            f"attempt(s), last: {failure.reason}{waited}; {outcome}; retry later"
        )

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


def _failure(retry_state: RetryCallState) -> _Retryable | None:
    outcome = retry_state.outcome
    failure = outcome.exception() if outcome is not None else None
    return failure if isinstance(failure, _Retryable) else None


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


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _describe(response: httpx.Response) -> str:
    text = response.text
    if len(text) > _BODY_SHOWN:
        text = text[:_BODY_SHOWN] + "…"
    return f"{response.status_code} {response.reason_phrase}: {text}"
