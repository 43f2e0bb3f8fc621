"""The Merkle tree over the stored events (docs/integrity.md), kept in each save's transaction.

Three tables of the store's own, created with the index tables:

- ``ledger_leaves (position, leaf, hash)``: one row per stored event, its notification id, its
  leaf index (0, 1, 2, … in log order) and the leaf hash of `stored_event_bytes`;
- ``ledger_tree``: one row, the writer's state (size and frontier: at most 64 hashes) and the
  latest signed head, replaced by every save;
- ``ledger_tree_heads``: signed heads kept as history, one each time the tree crosses a
  multiple of `HEAD_INTERVAL` leaves (and each head signed on demand), so verification checks
  a bounded number of signatures while still narrowing a rewrite down to an interval.

The write path reads the one state row, hashes the save's events, appends their leaves, signs
the new root and writes the state back: it never reads older leaves. It runs after the events'
insert, inside the same transaction, so events and leaves commit together or not at all.

Positions and concurrency. The leaf's position is the event's notification id. SQLite issues
them as rowids, gap-free, and serialises writers on the database's write lock. PostgreSQL
issues them from a sequence under the library's EXCLUSIVE lock on the events table (see
`ledger.store.postgres`), so they follow commit order, but a save that rolls back (a duplicate
action, a version conflict) has consumed its sequence values: positions may have gaps there.
Leaf indexes never do: the state row is read and written under that same lock, so concurrent
writers extend the tree one after the other and each leaf index is issued exactly once.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, cast
from uuid import UUID

from ledger.errors import ConfigurationError
from ledger.integrity import StoredEvent, stored_event_bytes, stored_events_of
from ledger.merkle import HASH_SIZE, PAGE, TreeBuilder
from ledger.signing import SignedTreeHead, tree_head_bytes
from ledger.store.keyfile import SigningKeyFile
from ledger.store.rows import HEAD_TABLE, LEAF_TABLE, TREE_TABLE, from_micros, to_micros

HEAD_INTERVAL = 1024
"""A head is kept in the history each time the tree crosses a multiple of this many leaves."""

Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
Stream = Callable[[str, Sequence[Any]], Iterator[tuple[Any, ...]]]


@dataclass(frozen=True)
class TreeState:
    """The state row: the tree's size and right edge, and its latest signed head."""

    size: int
    frontier: tuple[bytes, ...]
    head: SignedTreeHead | None


class TreeRecorder:
    """The tree's tables and queries, shared by the SQLite and PostgreSQL recorders."""

    placeholder: str = "?"
    events_table_name: str
    signing_key: SigningKeyFile = SigningKeyFile(None)

    @abstractmethod
    def _qualified(self, table: str) -> str:
        """The table name as the backend must spell it."""

    @abstractmethod
    def _lock_events(self, cursor: Any) -> None:
        """Hold the events table against writers for the rest of the transaction."""

    @abstractmethod
    def tree_transaction(self) -> AbstractContextManager[Any]:
        """A write transaction holding the events table, for signing a head on demand."""

    @abstractmethod
    def tree_snapshot(self) -> AbstractContextManager[TreeSnapshot]:
        """One consistent read of events, leaves and heads (`TreeSnapshot`)."""

    position_column = "rowid"
    id_text = "originator_id"
    """The originator id as its leaf hashes it: the text SQLite stores, a UUID's hex."""

    @staticmethod
    def as_utf8(expression: str) -> str:
        """A text expression selected as its UTF-8 bytes (SQLite keeps text as UTF-8)."""
        return f"CAST({expression} AS BLOB)"

    _key_checked: str | None = None  # the key id found to match the ledger's heads

    # Writing ----------------------------------------------------------------------------

    def ready_to_sign(self) -> None:
        """Before a save's transaction: the key loads and is the ledger's own (checked once
        per recorder), so a save that could not be signed fails before anything is stored."""
        _, signer = self.signing_key.load()
        if self._key_checked != signer:
            with self.tree_snapshot() as snapshot:
                head = snapshot.latest_head()
            if head is not None:
                _check_key(TreeState(head.size, (), head), signer)
            self._key_checked = signer

    def append_leaves(
        self, cursor: Any, stored_events: Sequence[Any], positions: Sequence[int] | None
    ) -> None:
        """Inside the events' transaction: their leaves, the new state and its signed head."""
        if not positions:
            return
        key, signer = self.signing_key.load()
        state = self.tree_state(cursor)
        _check_key(state, signer)
        builder = TreeBuilder(state.size, state.frontier)
        pairs = list(zip(positions, stored_events, strict=True))
        if any(later[0] < earlier[0] for earlier, later in pairwise(pairs)):
            pairs.sort(key=lambda pair: pair[0])
        rows = []
        for position, stored in pairs:
            ident = stored.originator_id
            data = stored_event_bytes(
                position,
                ident.hex if isinstance(ident, UUID) else ident,
                stored.originator_version,
                stored.topic,
                stored.state,
            )
            rows.append((position, builder.size, builder.append(data)))
        self._insert_leaves(cursor, rows)
        self._write_head(cursor, state.size, builder, key, signer)

    def _insert_leaves(self, cursor: Any, rows: Sequence[tuple[int, int, bytes]]) -> None:
        """Store leaf rows (position, leaf, hash); a backend may stream them faster."""
        p = self.placeholder
        cursor.executemany(
            f"INSERT INTO {self._qualified(LEAF_TABLE)} (position, leaf, hash) "
            f"VALUES ({p}, {p}, {p})",
            rows,
        )

    def sign_head(self) -> SignedTreeHead:
        """The signed head of the whole tree: the latest one if it covers every leaf (read
        only), else a new one signed now (after an upgrade back-filled leaves no head covers)."""
        with self.tree_snapshot() as snapshot:
            head = snapshot.latest_head()
            if head is not None and head.size == snapshot.tree_size():
                return head
        with self.tree_transaction() as cursor:
            state = self.tree_state(cursor)
            if state.head is not None and state.head.size == state.size:
                return state.head
            key, signer = self.signing_key.load()
            _check_key(state, signer)
            return self._write_head(
                cursor, state.size, TreeBuilder(state.size, state.frontier), key, signer
            )

    def _write_head(
        self, cursor: Any, old_size: int, builder: TreeBuilder, key: Any, signer: str
    ) -> SignedTreeHead:
        size, root = builder.size, builder.root()
        signed_at = datetime.now(UTC)
        signature = key.sign(tree_head_bytes(size, root, signed_at, signer))
        micros = to_micros(signed_at)
        p = self.placeholder
        cursor.execute(
            f"UPDATE {self._qualified(TREE_TABLE)} SET size = {p}, frontier = {p}, root = {p}, "
            f"signed_at = {p}, key_id = {p}, signature = {p} WHERE id = 1",
            [size, b"".join(builder.frontier), root, micros, signer, signature],
        )
        if old_size == 0 or old_size // HEAD_INTERVAL != size // HEAD_INTERVAL or size == old_size:
            cursor.execute(
                f"INSERT INTO {self._qualified(HEAD_TABLE)} (size, root, signed_at, key_id, "
                f"signature) VALUES ({p}, {p}, {p}, {p}, {p}) ON CONFLICT (size) DO NOTHING",
                [size, root, micros, signer, signature],
            )
        return SignedTreeHead(size, root, from_micros(micros), signer, signature)

    def tree_state(self, cursor: Any) -> TreeState:
        """The state row; on a ledger stored before the tree existed, the leaves of every event
        are back-filled first, once, under the events table's lock."""
        state = self._read_state(cursor)
        if state is None:
            self._lock_events(cursor)
            state = self._read_state(cursor) or self._backfill(cursor)
        return state

    def _read_state(self, cursor: Any) -> TreeState | None:
        cursor.execute(
            "SELECT size, frontier, root, signed_at, key_id, signature "
            f"FROM {self._qualified(TREE_TABLE)} WHERE id = 1"
        )
        row = cursor.fetchone()
        if row is None:
            return None
        size, frontier, root, signed_at, signer, signature = (row[name] for name in _STATE)
        head = None
        if signer is not None:  # None until the first head is signed
            head = SignedTreeHead(
                size, bytes(root), from_micros(signed_at), signer, bytes(signature)
            )
        return TreeState(size, _split(bytes(frontier)), head)

    def _backfill(self, cursor: Any) -> TreeState:
        builder = TreeBuilder()
        p = self.placeholder
        events = self._qualified(self.events_table_name)
        column = self.position_column
        select = (
            f"SELECT {column} AS position, {self.id_text} AS originator_id, originator_version, "
            "topic, state "
            f"FROM {events} WHERE {column} > {p} ORDER BY {column} LIMIT {p}"
        )
        after = -1
        while True:
            cursor.execute(select, [after, PAGE])
            page = cursor.fetchall()
            rows = []
            for row in page:
                position = row["position"]
                data = stored_event_bytes(
                    position,
                    row["originator_id"],
                    row["originator_version"],
                    row["topic"],
                    bytes(row["state"]),
                )
                rows.append((position, builder.size, builder.append(data)))
            if rows:
                cursor.executemany(
                    f"INSERT INTO {self._qualified(LEAF_TABLE)} (position, leaf, hash) "
                    f"VALUES ({p}, {p}, {p})",
                    rows,
                )
            if len(page) < PAGE:
                break
            after = rows[-1][0]
        cursor.execute(
            f"INSERT INTO {self._qualified(TREE_TABLE)} (id, size, frontier) VALUES (1, {p}, {p})",
            [builder.size, b"".join(builder.frontier)],
        )
        return TreeState(builder.size, builder.frontier, None)


class TreeSnapshot:
    """Events, leaves and heads as one read transaction sees them: the `LeafSource` that
    `ledger.integrity.verify_log` and receipts read, a page at a time."""

    def __init__(self, recorder: TreeRecorder, query: Query, stream: Stream) -> None:
        self.recorder = recorder
        self.query = query
        self.stream = stream
        self.p = recorder.placeholder

    def leaf_count(self) -> int:
        ((count,),) = self.query(f"SELECT COUNT(*) FROM {self.recorder._qualified(LEAF_TABLE)}", [])
        return int(count)

    def leaves(self, start: int, stop: int) -> list[tuple[int, bytes]]:
        p = self.p
        # Each row is (position, hash), the hash bytes on both engines: served as it comes.
        return cast(
            list[tuple[int, bytes]],
            self.query(
                f"SELECT position, hash FROM {self.recorder._qualified(LEAF_TABLE)} "
                f"WHERE leaf >= {p} AND leaf < {p} ORDER BY leaf",
                [start, stop],
            ),
        )

    def stored_events(self) -> Iterator[StoredEvent]:
        recorder = self.recorder
        column = recorder.position_column
        return stored_events_of(
            self.stream(
                f"SELECT {column}, {recorder.as_utf8(recorder.id_text)}, originator_version, "
                f"{recorder.as_utf8('topic')}, state "
                f"FROM {recorder._qualified(recorder.events_table_name)} ORDER BY {column}",
                [],
            )
        )

    def heads(self) -> list[SignedTreeHead]:
        """Every head kept, and the latest, by size."""
        rows = self.query(
            "SELECT size, root, signed_at, key_id, signature "
            f"FROM {self.recorder._qualified(HEAD_TABLE)} ORDER BY size",
            [],
        )
        heads = [_head(row) for row in rows]
        latest = self.latest_head()
        if latest is not None and latest not in heads:
            heads.append(latest)
        return sorted(heads, key=lambda head: head.size)

    def tree_size(self) -> int:
        """The size the state row says the tree has (0 before the tables exist)."""
        rows = self.query(f"SELECT size FROM {self.recorder._qualified(TREE_TABLE)}", [])
        return int(rows[0][0]) if rows else 0

    def latest_head(self) -> SignedTreeHead | None:
        rows = self.query(
            "SELECT size, root, signed_at, key_id, signature "
            f"FROM {self.recorder._qualified(TREE_TABLE)} WHERE id = 1 AND key_id IS NOT NULL",
            [],
        )
        return _head(rows[0]) if rows else None

    def leaf_at(self, position: int) -> int | None:
        """The leaf index recorded for an event's position: a binary search over the leaf key,
        since positions grow with leaf indexes (an index on position would cost every save
        one more page written)."""
        table = self.recorder._qualified(LEAF_TABLE)
        ((last,),) = self.query(f"SELECT MAX(leaf) FROM {table}", [])
        low, high = 0, -1 if last is None else int(last)
        while low <= high:
            middle = (low + high) // 2
            found = self.query(f"SELECT position FROM {table} WHERE leaf = {self.p}", [middle])
            if not found:
                return None
            if found[0][0] == position:
                return middle
            if found[0][0] < position:
                low = middle + 1
            else:
                high = middle - 1
        return None

    def event_at(self, position: int) -> tuple[UUID, int] | None:
        """The aggregate id and version stored at a position, if any."""
        recorder = self.recorder
        rows = self.query(
            f"SELECT originator_id, originator_version "
            f"FROM {recorder._qualified(recorder.events_table_name)} "
            f"WHERE {recorder.position_column} = {self.p}",
            [position],
        )
        if not rows:
            return None
        ident, version = rows[0]
        return (ident if isinstance(ident, UUID) else UUID(str(ident))), int(version)


_STATE = ("size", "frontier", "root", "signed_at", "key_id", "signature")


def _head(row: Sequence[Any]) -> SignedTreeHead:
    size, root, signed_at, signer, signature = row
    return SignedTreeHead(size, bytes(root), from_micros(signed_at), signer, bytes(signature))


def _split(frontier: bytes) -> tuple[bytes, ...]:
    return tuple(frontier[i : i + HASH_SIZE] for i in range(0, len(frontier), HASH_SIZE))


def _check_key(state: TreeState, signer: str) -> None:
    if state.head is not None and state.head.key_id != signer:
        raise ConfigurationError(
            f"the signing key has id {signer[:16]}…, but this ledger's heads are signed by "
            f"{state.head.key_id[:16]}…: set LEDGER_SIGNING_KEY to the ledger's own key"
        )
