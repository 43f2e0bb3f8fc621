"""Whether an HTTP system's writes are conditional: found out once per collection.

``If-Match`` guards a write only where the server honours it, so before a collection's first
update or delete the adapter finds out (`Conditions.check`):

* the record's GET carries no ETag, or only a weak one (``W/"…"``: RFC 9110 compares If-Match
  strongly, so a weak tag can never match and is never sent), or the system is declared
  ``conditional_writes = "ignored"``: not conditional;
* otherwise, unless declared ``"honoured"``, a probe: a PATCH of no fields whose If-Match matches
  nothing. 412 means the server honours If-Match; a success means it ignores it.

Where writes are not conditional, ``require_conditional`` (the default) refuses them, naming the
reason (`Conditions.refusal`); ``require_conditional = false`` is the user's acknowledgment that
writes are best effort.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from adapters.http.resource import Fetched, Resources
from adapters.http.routes import CollectionRoute
from ledger.errors import ConfigurationError
from ledger.ports import key_text

ConditionalWrites = Literal["probe", "honoured", "ignored"]
CONDITIONAL_WRITES: tuple[ConditionalWrites, ...] = ("probe", "honoured", "ignored")


@dataclass(frozen=True)
class Guarantee:
    """Whether the server makes a collection's writes conditional (honours If-Match), and why."""

    conditional: bool
    reason: str


class Conditions:
    """What one system guarantees for each collection's writes, found out once."""

    def __init__(self, resources: Resources, *, require: bool, declared: ConditionalWrites):
        self._resources = resources
        self.require = require
        self._declared = declared
        self._guarantees: dict[str, Guarantee] = {}

    def check(self, collection: str, keys: Sequence[str] = ()) -> list[str]:
        """Find out whether writes to `collection` are conditional: raises
        `ConfigurationError` if they must be and are not, else the warnings to show before a
        run (none when they are conditional, or when no record exists yet to find out on)."""
        resources = self._resources
        route = resources.route(collection)
        guarantee = self._guarantees.get(collection)
        if guarantee is None and self._declared == "ignored":
            guarantee = self.guarantee(route, collection, Fetched(None))
        if guarantee is None:
            sample = self._sample(route, keys)
            guarantee = self.guarantee(route, collection, sample) if sample else None
        if guarantee is None or guarantee.conditional:
            return []
        if self.require:
            raise ConfigurationError(self.refusal(collection, guarantee))
        return [
            f"{resources.system}/{collection}: writes are best effort, not conditional: "
            f"{guarantee.reason}. An outside edit landing between a write's read and the write "
            "itself can be overwritten unseen; outside values found by the read after each "
            "write are reported as conflicts (docs/adapters.md)"
        ]

    def guarantee(
        self, route: CollectionRoute, collection: str, fetched: Fetched
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

    def refusal(self, collection: str, guarantee: Guarantee) -> str:
        system = self._resources.system
        return (
            f"{system}/{collection}: writes cannot be conditional: {guarantee.reason}; an "
            "outside edit landing between a write's read and the write would be overwritten "
            "unseen, and require_conditional is on, so nothing was written. Use a server that "
            "honours If-Match with strong ETags, or accept best-effort writes with "
            f"require_conditional = false in [systems.{system}] (see docs/adapters.md)"
        )

    def _probe(self, route: CollectionRoute, fetched: Fetched) -> Guarantee:
        """A PATCH of no fields whose If-Match matches nothing: 412 if If-Match is honoured."""
        http = self._resources.http
        url = self._resources.url(route, key_text(fetched.id) or "")
        mismatch = f'"changeledger-probe-{uuid.uuid4().hex}"'
        response = http.call(http.request, "PATCH", url, {}, {"If-Match": mismatch})
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

    def _sample(self, route: CollectionRoute, keys: Sequence[str]) -> Fetched | None:
        """A record to find the guarantee on: one of `keys`, else the first one listed."""
        resources = self._resources
        for key in keys[:3]:
            fetched = resources.http.call(resources.fetch, route, key)
            if fetched.record is not None:
                return fetched
        for item in resources.listed(route):
            listed = key_text(item.get(route.id_field)) if isinstance(item, dict) else None
            if listed is None:
                return None
            return resources.http.call(resources.fetch, route, listed)
        return None
