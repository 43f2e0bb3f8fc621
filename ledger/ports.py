"""The one small protocol every connector adapter implements.

An adapter speaks for one *system* (a CRM, a SQL database, a folder of spreadsheets) and
addresses records as ``collection`` + ``key``, where ``key`` is the text form of the record's
key in its one form (composite keys are joined with ``/``, each part's ``%`` and ``/``
escaped: see `ledger.keys`), and lists records in the one key order defined there.

Every write is compare-and-set: a `Write` names the values it expects the record to hold
for the fields it touches, and the adapter applies it only if the record still holds them.
One primitive serves recording (the automation's before-image or ``expected`` values),
rollback (the values the plan expects) and reconciliation. A refused write is reported,
never half-applied, and the result carries the record as it was read (the exact
before-image), so compensations are known rather than guessed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ledger.errors import ConfigurationError
from ledger.keys import join_key as join_key  # the key helpers adapters use
from ledger.keys import split_key as split_key
from ledger.values import ABSENT, same

Record = dict[str, Any]
WriteStatus = Literal["applied", "stale", "failed", "unknown"]


@dataclass(frozen=True)
class Write:
    """One compare-and-set write to one record.

    ``expected`` maps each field the write relies on to the value the record must hold
    (``ABSENT`` where the field must not exist). A ``create`` requires that the record does not
    exist; an ``update`` or ``delete`` requires that it does. ``token`` is the same for every
    attempt of one action, in any process (the ledger passes the action's fingerprint), so a
    system that deduplicates requests (an HTTP ``Idempotency-Key``) applies it once.
    """

    key: str
    operation: Literal["create", "update", "delete"]
    values: Record = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    expected: Record = field(default_factory=dict)
    token: str | None = None


@dataclass(frozen=True)
class WriteResult:
    """What happened to one `Write`.

    ``before`` is the record as the adapter read it immediately before deciding (None if it did
    not exist). ``assigned_key`` is set when the system chose a new key for a created record
    (a REST API assigning ids on POST). For ``stale``: ``field``, ``expected`` and ``actual``
    name the first difference (``field`` is ``"(record)"`` when existence was wrong).
    For ``failed``: ``error`` is the system's own reason, e.g. the constraint that refused it.
    ``unknown``: the write may have landed and the system could not be read to tell (its
    answer was lost and it stopped answering); the run leaves it pending for `recover`. An
    ``applied`` result with ``field`` set found an outside value right after the write (a
    system without conditional writes): a conflict to review, not part of ``before``.
    """

    key: str
    outcome: WriteStatus
    before: Record | None = None
    field: str | None = None
    expected: Any = None
    actual: Any = None
    error: str | None = None
    assigned_key: str | None = None


@dataclass(frozen=True)
class Relation:
    """A record's ``field`` holds the key of a record in ``parent`` (a foreign key): a rollback
    re-creates parents before their children and deletes children before their parents."""

    field: str
    parent: str


def key_text(value: Any) -> str | None:
    """The key text a system's key field holds (a CSV key cell, a JSON id field): text as is,
    an integer as its digits; None for anything else, which cannot be a key."""
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    return None


def declared_relations(
    system: str, routes: Mapping[str, Any], collection: str
) -> tuple[Relation, ...]:
    """The relations a collection declares in ``ledger.toml`` (``parents = {field =
    "collection"}``, for systems that cannot describe their own), each parent checked to be a
    collection of the same system."""
    route = routes.get(collection)
    parents: Mapping[str, str] = getattr(route, "parents", None) or {}
    for name, parent in parents.items():
        if parent not in routes:
            raise ConfigurationError(
                f"{system}/{collection}: parents.{name} names {parent!r}, which is not a "
                f"collection of {system} (known: {', '.join(sorted(routes))})"
            )
    return tuple(Relation(name, parent) for name, parent in parents.items())


class Adapter(Protocol):
    """A connector to one system. Implementations: `adapters.sql`, `adapters.files`,
    `adapters.http`, and `adapters.memory` (unit tests only)."""

    system: str

    def read(self, collection: str, keys: Sequence[str]) -> dict[str, Record | None]:
        """The current state of these records (None for a missing one), in one round trip
        where the system allows it."""
        ...

    def scan(self, collection: str) -> Iterator[tuple[str, Record]]:
        """Every record of a collection in ascending order of its key text (as Python compares
        str: `ledger.keys`), streamed so that memory does not grow with the collection; an
        adapter whose system lists in another order sorts through `adapters.keysort`."""
        ...

    def write(self, collection: str, writes: Sequence[Write]) -> list[WriteResult]:
        """Apply compare-and-set writes, one result per write in the same order, in one
        transaction or request per chunk where the system allows it. A stale or failed write
        does not stop the others. Raises `TransientError` only when nothing was applied."""
        ...

    def normalize(self, collection: str, values: Record) -> Record:
        """The values as the system will store them, where a conversion is lossless (an
        integer for a float column, ISO text for a date column), so that the ledger records
        what the target will hold and compares like with like; other values are left as they
        are (a write refuses what does not fit). Returns ``values`` itself when nothing
        needed converting."""
        ...

    def assigns_keys(self, collection: str) -> bool:
        """Whether the system chooses the key of a created record itself (a REST API assigning
        ids on POST), so that a re-created record comes back under a new key."""
        ...

    def relations(self, collection: str) -> tuple[Relation, ...]:
        """The collection's references to parent records, where the system knows them."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


def check_expected(key: str, write: Write, current: Record | None) -> WriteResult | None:
    """The shared compare step: None if `write` may proceed on `current`, else its stale result."""
    if write.operation == "create":
        if current is not None:
            return WriteResult(key, "stale", current, "(record)", ABSENT, "exists")
        return None
    if current is None:
        return WriteResult(key, "stale", None, "(record)", "exists", ABSENT)
    for name, expected in write.expected.items():
        actual = current.get(name, ABSENT)
        if not same(actual, expected):
            return WriteResult(key, "stale", current, name, expected, actual)
    return None


class Effect(Protocol):
    """What a write does to a record: a `Write`, or the ledger's `Change` it is made from."""

    @property
    def operation(self) -> str: ...
    @property
    def values(self) -> Mapping[str, Any]: ...
    @property
    def unset(self) -> Sequence[str]: ...


def holds(write: Effect, record: Record | None) -> bool:
    """Whether `record` already shows `write`'s effect, so a write that landed is not redone:
    a delete holds when the record is gone; a create or update when the record exists, each
    written field holds its value (`same`: type and value all the way down, an ABSENT value
    meaning the field does not exist) and no unset field exists. ``expected`` is not looked at."""
    if write.operation == "delete":
        return record is None
    if record is None:
        return False
    return all(same(record.get(name, ABSENT), value) for name, value in write.values.items()) and (
        not any(name in record for name in write.unset)
    )


def apply_write(write: Write, current: Record | None) -> Record | None:
    """The record after `write` (None once deleted): for adapters that rewrite whole records."""
    if write.operation == "delete":
        return None
    if write.operation == "create":
        return dict(write.values)
    updated = {name: value for name, value in (current or {}).items() if name not in write.unset}
    updated.update(write.values)
    return updated
