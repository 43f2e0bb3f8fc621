"""What a save stores besides the events, in the events' own transaction: one typed object.

The library's ``Application.save(*objs, **kwargs)`` hands its keyword arguments down to the
recorder's insert untouched. The ledger passes exactly one, ``context=SaveContext(...)``, and
the recorders read it here and nowhere else, so a misspelt or unexpected key fails loudly
instead of silently storing events without their index rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final
from uuid import UUID

from ledger.store.rows import IndexEntry, PendingIntent

CONTEXT: Final = "context"  # the one keyword argument a save passes to the recorder
_LIBRARY_KEYS: Final = frozenset({"tracking"})  # added by `Application._record` (None here)


@dataclass(frozen=True)
class SaveContext:
    """The rows written with a save's events: their index entries (keyed by aggregate id and
    version), intents declared (queued as pending) and intents settled (taken off the queue)."""

    actions: Mapping[tuple[UUID, int], IndexEntry] = field(
        default_factory=lambda: MappingProxyType({})
    )
    declared: Sequence[PendingIntent] = ()
    settled: Sequence[str] = ()


NOTHING: Final = SaveContext()


def context_of(kwargs: Mapping[str, Any]) -> SaveContext:
    """The save context among the keyword arguments the library passed to the recorder."""
    unexpected = sorted(set(kwargs) - {CONTEXT, *_LIBRARY_KEYS})
    if unexpected:
        raise TypeError(f"a ledger save takes {CONTEXT}=SaveContext(...), not {unexpected}")
    context = kwargs.get(CONTEXT)
    if context is None:
        return NOTHING
    if not isinstance(context, SaveContext):
        raise TypeError(f"{CONTEXT} must be a SaveContext, not {type(context).__name__}")
    return context
