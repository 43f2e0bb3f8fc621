"""Rows in PostgreSQL's binary ``COPY`` format, built directly from the values a save writes.

A save's events, leaves and index rows reach the server by ``COPY … FROM STDIN (FORMAT
BINARY)`` (`ledger.store.postgres`): one stream per table instead of a statement executed per
row, which was most of a large save's time. psycopg's own ``write_row`` adapts each value
through its Python dumpers (several calls per value without its C extension); the formats
here are fixed by the tables' columns, so each row is packed with one `struct` call and
joined. Binary, so no value is escaped: a text that holds a tab, a backslash or a newline
arrives byte for byte (``docs/architecture.md``: the store writes what the library would).

Each field is a 4-byte big-endian length then its bytes (length -1 for NULL); each row starts
with its 2-byte field count. ``COPY_HEADER``/``COPY_TRAILER`` frame the whole stream.
Column types: ``bigint`` is 8 bytes, ``uuid`` 16, ``text`` its UTF-8 bytes (the connection's
client encoding, which psycopg sets to UTF-8), ``bytea`` the bytes themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from struct import Struct
from typing import Any, Final

COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, no extension
COPY_TRAILER: Final = b"\xff\xff"
_NULL: Final = b"\xff\xff\xff\xff"

_LENGTH = Struct(">i").pack
_BIGINT = Struct(">iq").pack  # length 8, value
_EVENT_HEAD = Struct(">hiqi").pack  # 5 fields; notification_id; originator_id's length (16)
_EVENT_VERSION = Struct(">iqi").pack  # originator_version; topic's length
_LEAF = Struct(">hiqiqi").pack  # 3 fields; leaf; position; hash's length
_INDEX_HEAD = Struct(">hiqi").pack  # 12 fields; position; entity_id's length (16)


def _text(value: str | None) -> bytes:
    if value is None:
        return _NULL
    data = value.encode()
    return _LENGTH(len(data)) + data


def event_rows(events: Sequence[Any], positions: Sequence[int]) -> Iterable[bytes]:
    """Rows of the events table: notification_id, originator_id, originator_version, topic,
    state (`eventsourcing.persistence.StoredEvent`s, UUID originator ids)."""
    version_pack, head_pack, length = _EVENT_VERSION, _EVENT_HEAD, _LENGTH
    for event, position in zip(events, positions, strict=True):
        topic = event.topic.encode()
        state = event.state
        yield b"".join(
            (
                head_pack(5, 8, position, 16),
                event.originator_id.bytes,
                version_pack(8, event.originator_version, len(topic)),
                topic,
                length(len(state)),
                state,
            )
        )


def leaf_rows(rows: Iterable[tuple[int, int, bytes]]) -> Iterable[bytes]:
    """Rows of the leaves table, from (position, leaf, hash)."""
    pack = _LEAF
    for position, leaf, hashed in rows:
        yield pack(3, 8, leaf, 8, position, len(hashed)) + hashed


def index_rows(rows: Iterable[Sequence[Any]]) -> Iterable[bytes]:
    """Rows of the action index, in `IndexedRecorder.insert_index_statement`'s column order:
    position, entity_id, version, system, collection, key, operation, batch, workflow,
    recorded_at, effective_at, fingerprint."""
    head, bigint, text = _INDEX_HEAD, _BIGINT, _text
    for row in rows:
        (position, entity, version, system, collection, key, operation, batch, workflow,
         recorded_at, effective_at, fingerprint) = row  # fmt: skip
        yield b"".join(
            (
                head(12, 8, position, 16),
                entity.bytes,
                bigint(8, version),
                text(system),
                text(collection),
                text(key),
                text(operation),
                text(batch),
                text(workflow),
                bigint(8, recorded_at),
                _NULL if effective_at is None else bigint(8, effective_at),
                text(fingerprint),
            )
        )


def stream(rows: Iterable[bytes], chunk: int = 1 << 20) -> Iterable[bytes]:
    """The framed stream of these rows, in blocks of about ``chunk`` bytes (each block one
    write to the server, so memory holds a block, not the whole save)."""
    block = [COPY_HEADER]
    size = len(COPY_HEADER)
    for row in rows:
        block.append(row)
        size += len(row)
        if size >= chunk:
            yield b"".join(block)
            block, size = [], 0
    block.append(COPY_TRAILER)
    yield b"".join(block)


def copy_binary(cursor: Any, statement: str, rows: Iterable[bytes]) -> None:
    """Run ``COPY … FROM STDIN (FORMAT BINARY)`` on a psycopg cursor, sending these rows."""
    with cursor.copy(statement) as copy:
        for block in stream(rows):
            copy.write(block)
