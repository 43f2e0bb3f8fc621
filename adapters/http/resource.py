"""Reading an HTTP system's resources: one record's GET (with its ETag) and a collection's listing.

Keys go into URLs percent-encoded as one path segment (``/`` included), and the record's id
field is the key, never a field of the records this adapter returns (nor is a route's
``fingerprint_field``, the ledger's own bookkeeping). Bodies are parsed exactly
(`ledger.values.parse_json`). Listings page through `adapters.http.listing`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from adapters.http.client import RetryingClient, describe
from adapters.http.listing import gathered, in_key_order, items, ordered
from adapters.http.routes import CollectionRoute
from ledger.errors import AdapterError, ConfigurationError, InvalidValue, TargetRejected
from ledger.ports import Record, key_text
from ledger.values import parse_json


@dataclass(frozen=True)
class Fetched:
    """One GET of one record: the record (None if missing), its ETag and its id as held."""

    record: Record | None
    etag: str | None = None
    id: Any = None

    @property
    def strong_etag(self) -> str | None:
        """The ETag if If-Match can use it: a weak one never matches (RFC 9110, 13.1.1)."""
        return self.etag if self.etag and not self.etag.startswith("W/") else None


class Resources:
    """The records of one HTTP system, read through its retrying client."""

    def __init__(
        self,
        system: str,
        http: RetryingClient,
        base_url: str,
        routes: dict[str, CollectionRoute],
        page_size: int,
    ):
        self.system = system
        self.http = http
        self.base = base_url.rstrip("/")
        self.routes = routes
        self.page_size = page_size

    def route(self, collection: str) -> CollectionRoute:
        try:
            return self.routes[collection]
        except KeyError:
            raise ConfigurationError(
                f"{self.system}: no route for collection {collection!r}; "
                f"add it to the adapter's collections (known: {sorted(self.routes)})"
            ) from None

    def url(self, route: CollectionRoute, key: str) -> str:
        return f"{self.base}{route.path}/{quote(key, safe='')}"

    def fetch(self, route: CollectionRoute, key: str) -> Fetched:
        """One GET of one record."""
        url = self.url(route, key)
        response = self.http.request("GET", url)
        if response.status_code == 404:
            return Fetched(None)
        if not response.is_success:
            raise TargetRejected(f"{self.system}: GET {url} was refused: {describe(response)}")
        body = self.parse(url, response)
        if not isinstance(body, dict):
            raise AdapterError(f"{self.system}: GET {url} did not return a JSON object")
        held_id = body.pop(route.id_field, key)
        if route.fingerprint_field:
            body.pop(route.fingerprint_field, None)
        return Fetched(body, response.headers.get("ETag"), held_id)

    def scan(self, route: CollectionRoute) -> Iterator[tuple[str, Record]]:
        """Every record in key-text order: streamed where the listing is in that order,
        else gathered and sorted."""
        url = self.base + route.path
        keyed = self.keyed(route)
        if in_key_order(route):
            return ordered(keyed, self.system, url)
        return gathered(keyed, self.system, url)

    def keyed(self, route: CollectionRoute) -> Iterator[tuple[str, Record]]:
        """The listing as (key text, record), in the server's order."""
        url = self.base + route.path
        return (self._split(route, url, item) for item in self.listed(route))

    def listed(self, route: CollectionRoute) -> Iterator[Any]:
        """The listing's items as the server sends them."""
        url = self.base + route.path
        return items(route, url, self.page_size, self._list_page, self.parse, self.system)

    def parse(self, url: str, response: httpx.Response) -> Any:
        try:
            return parse_json(response.content, where=f"{self.system} {url}")
        except InvalidValue as error:
            raise AdapterError(
                f"{self.system}: GET {url} returned unreadable JSON: {error}"
            ) from None

    def _list_page(self, url: str, params: dict[str, str] | None) -> httpx.Response:
        response = self.http.call(self.http.request, "GET", url, None, None, params)
        if not response.is_success:
            raise TargetRejected(f"{self.system}: GET {url} was refused: {describe(response)}")
        return response

    def _split(self, route: CollectionRoute, url: str, item: Any) -> tuple[str, Record]:
        key = key_text(item.get(route.id_field)) if isinstance(item, dict) else None
        if key is None:
            raise AdapterError(
                f"{self.system}: GET {url} listed an item without a text or integer "
                f"{route.id_field!r}; check the route's id_field"
            )
        hidden = (route.id_field, route.fingerprint_field)
        return key, {name: value for name, value in item.items() if name not in hidden}
