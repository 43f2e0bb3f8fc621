"""The records and changes every workload uses, generated deterministically from an index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

from ledger import Address, Change

SYSTEM = "crm"
COLLECTION = "contacts"
SEED_BATCH = "seed"
CHECKPOINT = "seeded"
OWNERS = ("ana", "bo", "chen", "dara")
HISTORY = Address(SYSTEM, "history", "long-lived")


def address(i: int) -> Address:
    return Address(SYSTEM, COLLECTION, f"{i:07d}")


def seed_values(i: int) -> dict[str, object]:
    return {
        "email": f"contact{i}@example.com",
        "lifecycle_stage": "lead",
        "owner": OWNERS[i % len(OWNERS)],
        "score": i % 100,
    }


def seed_change(i: int) -> Change:
    """The first action on record ``i`` (not timed: it makes the records exist)."""
    return Change(address(i), "create", values=seed_values(i))


def update_values(i: int) -> dict[str, object]:
    return {"lifecycle_stage": "customer", "score": (i * 7) % 100, "owner": OWNERS[(i + 1) % 4]}


def update_change(i: int) -> Change:
    """The timed action on record ``i``: an update of three fields of an existing record."""
    return Change(
        address(i),
        "update",
        values=update_values(i),
        inputs={"rule": "score >= 50 -> customer", "row": i},
        sources=(f"sheet/leads/{i}",),
        workflow="lead-sync",
        actor="bench",
    )


class Updates(Sequence[Change]):
    """`update_change(i)` for i in 0..n-1, each made when it is read: a batch of a million
    changes would otherwise weigh more than the ledger recording it."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, index: int) -> Change: ...

    @overload
    def __getitem__(self, index: slice) -> list[Change]: ...

    def __getitem__(self, index: int | slice) -> Change | list[Change]:
        if isinstance(index, slice):
            return [update_change(i) for i in range(*index.indices(self.n))]
        if not -self.n <= index < self.n:
            raise IndexError(index)
        return update_change(index % self.n)


def history_change(version: int) -> Change:
    """Version ``version`` of the one long-lived record of workload 4."""
    if version == 1:
        return Change(HISTORY, "create", values={"stage": "lead", "score": 0, "touches": 0})
    values: dict[str, object] = {"score": version % 101, "touches": version}
    if version % 10 == 0:
        values["stage"] = ("lead", "mql", "sql", "customer")[(version // 10) % 4]
    return Change(HISTORY, "update", values=values, actor="bench")
