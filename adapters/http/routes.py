"""Where each collection of an HTTP system lives and how the server lists it (`ledger.toml`'s
`collections.NAME = {...}` of an HTTP system)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Listing = Literal["cursor", "array", "page", "offset", "link"]
LISTINGS: tuple[Listing, ...] = ("cursor", "array", "page", "offset", "link")


@dataclass(frozen=True)
class CollectionRoute:
    """Where a collection lives on the server, how its ids are named and how it is listed."""

    path: str
    id_field: str = "id"
    put_create: bool = False
    assigns_ids: bool = False
    parents: Mapping[str, str] = field(default_factory=dict)  # field -> parent collection
    listing: Listing = "cursor"
    ordered: bool | None = None  # listed in key-text order? (default: only a cursor listing)
    limit_param: str = "limit"
    after_param: str = "after"
    page_param: str | None = None  # "page" for a page listing; sent by a link one only if set
    first_page: int = 1
    offset_param: str = "offset"
    items_field: str = "items"
    next_field: str = "next"
    idempotency_header: str | None = "Idempotency-Key"
    fingerprint_field: str | None = None  # where a create stores its fingerprint, if anywhere
    version_field: str | None = None  # a counter the server increments on every write
