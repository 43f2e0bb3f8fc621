"""One compare-and-set write over REST: GET, compare, write with If-Match and Idempotency-Key.

Each write GETs its record, runs `check_expected` on it, then writes with ``If-Match`` set to
the record's ETag where the collection's writes are conditional (`adapters.http.probe`).

Where writes are conditional the server compares atomically: no window. A 412 means the record
moved between our GET and our write; the adapter re-reads at once and reports ``stale`` (with
the expected and the actual value) if a field the write relies on changed, or writes again
against the new version if only other fields changed. A record that keeps moving past
``retry_attempts`` is ``stale`` naming the first field that differs between the last two reads; a
412 to the very ETag the server just sent is ``failed`` (it compares ETags in a way no client
can satisfy).

Where they are not, ``require_conditional`` (the default) refuses every update and delete, naming
the reason, and `Conditions.check` raises so a run refuses to start. With ``require_conditional =
False`` (the user's acknowledgment) the writes are best effort: the GET just before the write
is the narrowest window REST allows, and after each update or delete the adapter reads the record
again and compares every field (the written ones and all others) with what its write should have
left. A difference is an outside value: the write is ``applied`` with its own before-image and
the difference in ``field``/``expected``/``actual``, a conflict for review, never folded into
the before-image. What stays undetectable: an edit to a field the write sets, landing between
the GET and the write, is overwritten — unless the route names a ``version_field`` the server
increments on every write, whose jump by more than one is then reported. A delete or a
PUT-create racing an outside write cannot be checked afterwards.

Other 4xx answers are not retried: the write is ``failed`` with the status and the response
body.

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
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from adapters.http.client import Moved, Retryable, describe
from adapters.http.probe import Conditions
from adapters.http.resource import Fetched, Resources
from adapters.http.routes import CollectionRoute
from adapters.jsontext import NotJson, exact_json
from adapters.numbers import NumberModel, held, not_held
from ledger.errors import AdapterError, TransientError
from ledger.ports import Record, Write, WriteResult, apply_write, check_expected, holds, key_text
from ledger.values import ABSENT, same


@dataclass
class _Progress:
    """What one write's attempts have learnt so far."""

    before: Record | None = None
    sent: bool = False  # an attempt's request may have reached the server
    resent_post: bool = False  # a POST was sent again after an answer was lost
    refused_etag: str | None = None  # the ETag a 412 answered


class Writer:
    """Writes one record at a time to one system, as the module docstring says."""

    def __init__(self, resources: Resources, conditions: Conditions, numbers: NumberModel):
        self._resources = resources
        self._http = resources.http
        self._conditions = conditions
        self._numbers = numbers
        self.system = resources.system

    def write(self, route: CollectionRoute, collection: str, write: Write) -> WriteResult:
        """One write's result; raises `TransientError` only if it surely did not land."""
        try:
            exact_json(write.values, decimals=False)
        except NotJson as error:
            return WriteResult(write.key, "failed", error=f"{self.system}: {error}")
        problem = not_held(write.values, self._numbers)
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
        fetch = self._resources.fetch
        retrying = self._http.retrying()
        try:
            return retrying(self._attempt, route, collection, write, token, progress)
        except Moved:
            now = self._http.call(fetch, route, write.key)
            if now.strong_etag == progress.refused_etag:
                return self._refused_own_etag(route, write, now)
            field, was, actual = _first_difference(progress.before, now.record)
            return WriteResult(write.key, "stale", now.record, field, was, actual)
        except Retryable as failure:
            if not progress.sent:
                raise self._http.transient(failure, retrying) from failure
            try:  # one last look: did a request whose answer was lost land after all?
                current = fetch(route, write.key).record
                found = self._created_by(route, write, token)
            except (Retryable, AdapterError):
                return self._unknown(write, progress, str(self._http.transient(failure, retrying)))
            if holds(write, current):
                return WriteResult(write.key, "applied", progress.before)
            if found is not None:
                return WriteResult(write.key, "applied", None, assigned_key=found)
            if _posted_elsewhere(route, write):
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
        fetched = self._resources.fetch(route, write.key)
        current = fetched.record
        if progress.refused_etag is not None and fetched.strong_etag == progress.refused_etag:
            return self._refused_own_etag(route, write, fetched)
        if progress.sent:
            if holds(write, current):
                return WriteResult(write.key, "applied", progress.before)  # the lost write landed
            found = self._created_by(route, write, token)
            if found is not None:
                return WriteResult(write.key, "applied", None, assigned_key=found)
            progress.resent_post = _posted_elsewhere(route, write)
        refused = check_expected(write.key, write, current)
        if refused is not None:
            return refused
        conditions = self._conditions
        guarantee = conditions.guarantee(route, collection, fetched)
        etag = fetched.strong_etag
        if write.operation != "create" and conditions.require:
            if guarantee is not None and not guarantee.conditional:
                return WriteResult(
                    write.key, "failed", current, error=conditions.refusal(collection, guarantee)
                )
            if etag is None:
                url = self._resources.url(route, write.key)
                return WriteResult(
                    write.key,
                    "failed",
                    current,
                    error=(
                        f"{self.system}: GET {url} gave no strong ETag, so this write cannot be "
                        "conditional and require_conditional is on"
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
        fetched: Fetched,
        etag: str | None,
        token: str,
    ) -> httpx.Response:
        url = self._resources.url(route, write.key)
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
        return self._http.request("POST", self._resources.base + route.path, body, once)

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
            assigned = _assigned_key(route, write, response)
            if progress.resent_post:
                self._warn_twins(route, write, assigned)
            if confirm and write.operation != "create":
                return self._confirm(route, write, progress.before)
            return WriteResult(write.key, "applied", progress.before, assigned_key=assigned)
        if status == 412:
            progress.refused_etag = etag
            raise Moved(method, url, "412 Precondition Failed", sent=False)
        if status in (404, 409):
            current = self._resources.fetch(route, write.key).record
            if progress.sent and holds(write, current):
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
            now = self._http.call(self._resources.fetch, route, write.key).record
        except AdapterError as error:
            self._http.activity.warnings.append(
                f"{self.system}: {write.operation} of {write.key} applied, but the read to "
                f"confirm it failed ({error}): reconcile to check for outside edits"
            )
            return WriteResult(write.key, "applied", before)
        if (expected is None and now is None) or same(now, expected):
            return WriteResult(write.key, "applied", before)
        field, wanted, actual = _first_difference(expected, now)
        return WriteResult(write.key, "applied", before, field, wanted, actual)

    def _refused_own_etag(
        self, route: CollectionRoute, write: Write, fetched: Fetched
    ) -> WriteResult:
        """A 412 to the very ETag the server sends for the record: not a race, a server that
        compares ETags in a way no client can satisfy (retrying would only repeat it)."""
        error = (
            f"{self.system}: {write.operation} of {self._resources.url(route, write.key)} was "
            f"refused (412) with the ETag the server sends for it ({fetched.etag}): it compares "
            "ETags in a way no client can satisfy"
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

    def _created_by(self, route: CollectionRoute, write: Write, token: str) -> str | None:
        """The key of the record a lost POST created, found by the fingerprint it stored."""
        if not (_posted_elsewhere(route, write) and route.fingerprint_field):
            return None
        for item in self._resources.listed(route):
            if isinstance(item, dict) and item.get(route.fingerprint_field) == token:
                return key_text(item.get(route.id_field))
        return None

    def _warn_twins(self, route: CollectionRoute, write: Write, assigned: str | None) -> None:
        """After a POST was sent again: name other records holding the same values."""
        twins = [
            key
            for key, record in self._resources.keyed(route)
            if key != assigned and same(record, write.values)
        ]
        if twins:
            self._http.activity.warnings.append(
                f"{self.system}: the answer to the POST creating {write.key} was lost and the "
                f"POST sent again; {', '.join(twins)} hold the same values as the record "
                f"created at {assigned}: a duplicate if {self.system} does not honour "
                "Idempotency-Key; check and delete the extra one (or set the route's "
                "fingerprint_field)"
            )


def _posted_elsewhere(route: CollectionRoute, write: Write) -> bool:
    """A POST whose record the server may have stored under a key of its own."""
    return write.operation == "create" and route.assigns_ids and not route.put_create


def _assigned_key(route: CollectionRoute, write: Write, response: httpx.Response) -> str | None:
    if write.operation != "create":
        return None
    assigned: str | None = None
    try:
        body = json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        assigned = key_text(body.get(route.id_field))
    location = response.headers.get("Location")
    if assigned is None and location:
        assigned = unquote(urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1])
    return assigned if assigned is not None and assigned != write.key else None


def _first_difference(was: Record | None, now: Record | None) -> tuple[str, Any, Any]:
    """The first field whose value differs, with both values; ``(record)`` for existence."""
    if was is None or now is None:
        return "(record)", ABSENT if was is None else "exists", ABSENT if now is None else "exists"
    for name in [*was, *(name for name in now if name not in was)]:
        if not same(was.get(name, ABSENT), now.get(name, ABSENT)):
            return name, was.get(name, ABSENT), now.get(name, ABSENT)
    return "(record)", was, now  # only the server's version moved
