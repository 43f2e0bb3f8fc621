"""Reading the records a rollback touches from their targets, one round trip per collection."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ledger.domain import Address
from ledger.errors import InvalidChange
from ledger.ports import Adapter


def read_targets(adapters: dict[str, Adapter], addresses: Iterable[Address]) -> dict[str, Any]:
    """The current target record of every address (None: absent), keyed by address."""
    wanted: dict[tuple[str, str], list[Address]] = {}
    for address in addresses:
        wanted.setdefault((address.system, address.collection), []).append(address)
    images: dict[str, Any] = {}
    for (system, collection), group in wanted.items():
        adapter = adapters.get(system)
        if adapter is None:
            raise InvalidChange(
                f"the rollback touches system {system!r}, which is not configured", field="system"
            )
        records = adapter.read(collection, [a.key for a in group])
        for address in group:
            images[str(address)] = records[address.key]
    return images
