"""Listing a REST collection in the paging style its API speaks, for `HttpAdapter.scan`.

REST APIs page their listings in a handful of ways; a route names its style as ``listing``:

* ``cursor`` (the default): ``GET {path}?limit=N&after=C`` answers ``{"items": [...], "next":
  C or null}``; ``next`` is passed back as ``after``. The names are the route's
  ``limit_param``, ``after_param``, ``items_field`` and ``next_field``.
* ``array``: ``GET {path}`` answers every record at once, as a plain JSON array.
* ``page``: ``GET {path}?page=P&limit=N`` (``page_param``, default ``page``), pages numbered
  from ``first_page``, until a page is empty (so a server capping ``limit`` below what was
  asked cannot end the listing early).
* ``offset``: ``GET {path}?offset=O&limit=N`` (``offset_param``), until a page is empty.
* ``link``: ``GET {path}?limit=N`` (plus ``page_param=first_page`` if the route sets
  ``page_param``), then each RFC 8288 ``Link: <url>; rel="next"`` until none.

Each page's body is either a JSON array of records or an object holding them in
``items_field``. Records must hold their id field (text or an integer).

Order. `Adapter.scan` yields records in ascending key-text order. A listing declared ``ordered``
(the default for ``cursor``: a keyset cursor is an order) is streamed, one page in memory, and a
key out of order is refused. Any other listing is gathered whole and sorted in memory, so memory
grows with the collection there.

Consistency. Page and offset listings shift when records are added or deleted during the scan,
so a record could be skipped or listed twice. A key listed twice is refused, and where pages
carry ``X-Total-Count`` (json-server does) a count that changes during the scan, or that does not
match the records listed, is refused too: scan again. Where neither shows it, a skip during
concurrent deletes is not detected; prefer ``cursor`` listings for large, busy collections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import httpx

from adapters.http.routes import CollectionRoute
from ledger.errors import AdapterError

if TYPE_CHECKING:
    from ledger.ports import Record


# One GET of a listing page through the adapter's retries, and its body parsed.
Get = Callable[[str, dict[str, str] | None], httpx.Response]
Parse = Callable[[str, httpx.Response], Any]


def in_key_order(route: CollectionRoute) -> bool:
    """Whether the route's listing comes in ascending key-text order (so it can be streamed)."""
    return route.ordered if route.ordered is not None else route.listing == "cursor"


def items(
    route: CollectionRoute, url: str, page_size: int, get: Get, parse: Parse, system: str
) -> Iterator[Any]:
    """Every listed item, page after page, in the server's order."""
    totals = _Totals(system, url)

    def page(address: str, params: dict[str, str] | None) -> tuple[httpx.Response, Any, list[Any]]:
        response = get(address, params)
        body = parse(address, response)
        listed = _items_of(route, body, system, address)
        totals.saw(response, len(listed))
        return response, body, listed

    limit = {route.limit_param: str(page_size)}
    if route.listing == "array":
        yield from page(url, None)[2]
    elif route.listing == "cursor":
        after: str | None = None
        while True:
            params = dict(limit) if after is None else {**limit, route.after_param: after}
            _, body, listed = page(url, params)
            yield from listed
            cursor = body.get(route.next_field) if isinstance(body, dict) else None
            cursor = str(cursor) if type(cursor) in (str, int) else None
            if cursor is None:
                break
            if cursor == after:
                raise AdapterError(f"{system}: GET {url} returned the same page cursor twice")
            after = cursor
    elif route.listing in ("page", "offset"):
        by_page = route.listing == "page"
        position = route.first_page if by_page else 0
        param = (route.page_param or "page") if by_page else route.offset_param
        while True:
            listed = page(url, {**limit, param: str(position)})[2]
            if not listed:
                break
            yield from listed
            position += 1 if by_page else len(listed)
    else:  # link
        first = {route.page_param: str(route.first_page)} if route.page_param else {}
        response, _, listed = page(url, {**limit, **first})
        seen = {str(response.request.url)}
        yield from listed
        while following := response.links.get("next", {}).get("url"):
            following = urljoin(str(response.request.url), following)
            if following in seen:
                raise AdapterError(f"{system}: GET {url}: the Link rel=next pages loop back")
            seen.add(following)
            response, _, listed = page(following, None)
            yield from listed
    totals.finish()


def ordered(
    keyed: Iterator[tuple[str, Record]], system: str, url: str
) -> Iterator[tuple[str, Record]]:
    """Stream records already in key-text order, refusing one out of order."""
    last: str | None = None
    for key, record in keyed:
        if last is not None and key <= last:
            raise AdapterError(
                f"{system}: GET {url} listed {key!r} after {last!r}; a streamed listing must "
                "come in ascending key-text order: fix the server's sort, or set the route's "
                "ordered = false to sort in memory"
            )
        last = key
        yield key, record


def gathered(
    keyed: Iterator[tuple[str, Record]], system: str, url: str
) -> Iterator[tuple[str, Record]]:
    """Gather the whole listing, refuse a key listed twice, and yield it in key-text order."""
    records: dict[str, Record] = {}
    for key, record in keyed:
        if key in records:
            raise AdapterError(
                f"{system}: GET {url} listed {key!r} twice; the collection changed while it "
                "was paged through: scan again"
            )
        records[key] = record
    for key in sorted(records):
        yield key, records[key]


def _items_of(route: CollectionRoute, body: Any, system: str, url: str) -> list[Any]:
    if isinstance(body, list):
        return body
    listed = body.get(route.items_field) if isinstance(body, dict) else None
    if not isinstance(listed, list):
        raise AdapterError(
            f"{system}: GET {url} returned neither a JSON array nor an object with a list "
            f"{route.items_field!r}; check the route's listing and items_field"
        )
    return listed


class _Totals:
    """The ``X-Total-Count`` each page announced, checked against what was listed."""

    def __init__(self, system: str, url: str):
        self.system, self.url = system, url
        self.total: int | None = None
        self.listed = 0
        self.counted = True

    def saw(self, response: httpx.Response, listed: int) -> None:
        self.listed += listed
        header = response.headers.get("X-Total-Count", "").strip()
        if not header.isdigit():
            self.counted = False
            return
        total = int(header)
        if self.total is not None and total != self.total:
            raise AdapterError(
                f"{self.system}: GET {self.url}: the collection went from {self.total} to "
                f"{total} records while it was paged through: scan again"
            )
        self.total = total

    def finish(self) -> None:
        if self.counted and self.total is not None and self.total != self.listed:
            raise AdapterError(
                f"{self.system}: GET {self.url} announced {self.total} records "
                f"(X-Total-Count) but listed {self.listed}: scan again"
            )
