"""Imports the eventsourcing library without the one setting it reads from the environment
at import time: ``TZINFO_TOPIC`` (the timezone of every event's timestamp; a bad topic fails
the import). The ledger owns its environment (docs/cli.md): its times are UTC whatever that
variable says. `ledger/__init__.py` imports this module first.

It also holds the two seams the pure domain needs (`trigger_built`, `init_built`): the
layers below the store cannot import `ledger.store.library_seams`, where every other seam
lives."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

_topic = os.environ.pop("TZINFO_TOPIC", None)
try:
    import eventsourcing.domain  # noqa: F401
    from eventsourcing.utils import resolve_topic
finally:
    if _topic is not None:
        os.environ["TZINFO_TOPIC"] = _topic


def trigger_built(aggregate: Any, event_class: type[Any], fields: dict[str, Any]) -> None:
    """`BaseAggregate.trigger_event` (the next event of an aggregate, applied to it and
    pending), the event built as `Mapper.to_domain_event` builds one it reads back: its
    ``__dict__`` set at once, in the dataclass's field order, where the frozen dataclass's
    ``__init__`` sets each of some twenty fields through ``object.__setattr__`` (a fifth of
    recording an action). A missing or unknown field is refused as that ``__init__`` would.
    `tests/unit/test_library_seams.py` hashes both library functions."""
    state = dict(fields)
    state["originator_id"] = aggregate.id
    state["originator_version"] = aggregate.version + 1
    if state.get("timestamp") is None:
        state["timestamp"] = event_class.create_timestamp()
    names, known = _event_fields(event_class)
    if state.keys() != known:
        wrong = sorted(known.symmetric_difference(state))
        raise TypeError(f"Can't construct event {event_class}: fields {wrong} missing or unknown")
    event = object.__new__(event_class)
    object.__setattr__(event, "__dict__", {name: state[name] for name in names})
    event.__post_init__()
    event.mutate(aggregate)
    aggregate._pending_events.append(event)


_FIELDS: dict[type[Any], tuple[tuple[str, ...], frozenset[str]]] = {}


def _event_fields(event_class: type[Any]) -> tuple[tuple[str, ...], frozenset[str]]:
    """An event class's ``__init__`` fields, in order and as a set (looked up once)."""
    if event_class not in _FIELDS:
        names = tuple(field.name for field in dataclasses.fields(event_class) if field.init)
        _FIELDS[event_class] = names, frozenset(names)
    return _FIELDS[event_class]


def init_built(event: Any, **init: Any) -> Any:
    """`CanInitAggregate.mutate` (a created event's new aggregate) for an event class that
    knows its aggregate's ``__init__`` arguments: the library finds them by inspecting two
    signatures and filtering the event's fields for each, every time an aggregate is
    created or read back. `tests/unit/test_library_seams.py` hashes the library's."""
    aggregate_class = resolve_topic(event.originator_topic)
    aggregate = aggregate_class.__new__(aggregate_class)
    aggregate.__base_init__(event.originator_id, event.originator_version, event.timestamp)
    aggregate.__init__(**init)
    event.apply(aggregate)
    return aggregate
