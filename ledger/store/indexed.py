"""The action index: one row per recorded action, written in the same transaction as its event.

The eventsourcing library keeps each event's time inside its serialized state, where
SQL cannot see it, and has no uniqueness but (aggregate, version). The index adds what
the ledger needs to answer quickly and to refuse duplicates atomically:

- ``fingerprint UNIQUE``: a second recording of the same action fails inside the very
  transaction that would have stored its event, so idempotency holds across processes;
- ``position`` (the event's notification id), ``recorded_at`` and ``effective_at``:
  a time or a checkpoint maps to versions without decoding events;
- ``system, collection, key``: a whole collection streams in key order.

The index is derived from the events (every column is also in the event), so it can be
rebuilt from the notification log. Each backend module subclasses its eventsourcing
recorder with `IndexedRecorder` and supplies the SQL dialect. Every statement the ledger runs
over the library's tables and its own is in this package.

Just over 400 lines: it is the index's one list of SQL statements, kept together so every
query over the index is found in one file.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from ledger.store.rows import (
    INDEX_TABLE,
    PENDING_TABLE,
    CollectionRow,
    Cutoff,
    IndexedAction,
    IndexEntry,
    MatchedAction,
    PendingIntent,
    StateRow,
)
from ledger.store.saving import SaveContext

INDEX_COLUMNS = (
    "position, entity_id, version, system, collection, key, operation, batch, workflow, "
    "recorded_at, effective_at, fingerprint"
)
"""The index table's columns, in the order `IndexedRecorder.index_rows` builds a row."""


class IndexedRecorder:
    """Queries over the action index, shared by the SQLite and PostgreSQL recorders."""

    placeholder: str = "?"
    events_table_name: str
    # Whether `held_transaction` really holds one (then a save inside it commits nothing yet).
    holds_transactions: bool = False

    def held_transaction(self) -> AbstractContextManager[None]:
        """One write transaction for every read and save of this thread until the context ends,
        committed at its end (rolled back on an error). Where the backend cannot hold one,
        nothing: each save is its own transaction."""
        return nullcontext()

    @abstractmethod
    def lock_records(self, names: Sequence[str]) -> AbstractContextManager[None]:
        """Hold these records (addresses) against other runs, across threads and processes,
        until the context ends (see `ledger.store.locks`)."""

    @abstractmethod
    def _rows(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run one read-only statement and return plain tuples."""

    @abstractmethod
    def _stream(
        self, statement: str, params: Sequence[Any]
    ) -> AbstractContextManager[Iterator[Any]]:
        """Run one read-only statement and read its rows lazily (plain tuples), in a read
        transaction of their own that lasts while the context is open."""

    @abstractmethod
    def _qualified(self, table: str) -> str:
        """The table name as the backend must spell it (with schema where there is one)."""

    @abstractmethod
    def _db_id(self, entity_id: UUID) -> Any:
        """An entity id as the events table stores it."""

    @abstractmethod
    def _uuid(self, value: Any) -> UUID:
        """An entity id read back from the events table."""

    def index_rows(
        self,
        stored_events: Sequence[Any],  # StoredEvent, whose originator_id is a UUID here
        positions: Sequence[int] | None,
        entries: Mapping[tuple[UUID, int], IndexEntry],
    ) -> list[tuple[Any, ...]]:
        """The index rows for the events just inserted (entries are keyed by id and version)."""
        if not entries or positions is None:
            return []
        rows = []
        for stored, position in zip(stored_events, positions, strict=True):
            entry = entries.get((stored.originator_id, stored.originator_version))
            if entry is not None:
                rows.append(
                    (
                        position,
                        self._db_id(stored.originator_id),
                        stored.originator_version,
                        entry.system,
                        entry.collection,
                        entry.key,
                        entry.operation,
                        entry.batch,
                        entry.workflow,
                        entry.recorded_at,
                        entry.effective_at,
                        entry.fingerprint,
                    )
                )
        return rows

    def write_derived_rows(
        self,
        cursor: Any,
        stored_events: Sequence[Any],
        positions: Sequence[int] | None,
        context: SaveContext,
    ) -> None:
        """Inside the events' transaction: index rows, and the queue of unsettled intents."""
        rows = self.index_rows(stored_events, positions, context.actions)
        if rows:
            self._insert_index(cursor, rows)
        p = self.placeholder
        if context.settled:
            cursor.executemany(
                f"DELETE FROM {self._qualified(PENDING_TABLE)} WHERE fingerprint = {p}",
                [(fingerprint,) for fingerprint in context.settled],
            )
        if context.declared:
            cursor.executemany(
                f"INSERT INTO {self._qualified(PENDING_TABLE)} (fingerprint, batch, system, "
                f"collection, key) VALUES ({p}, {p}, {p}, {p}, {p})",
                context.declared,
            )

    def _insert_index(self, cursor: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        """Store index rows (`insert_index_statement`'s columns); a backend may stream them."""
        cursor.executemany(self.insert_index_statement(), rows)

    def pending(self, batch: str | None = None) -> list[PendingIntent]:
        """Intents declared but not yet settled, by fingerprint."""
        statement = (
            "SELECT fingerprint, batch, system, collection, key "
            f"FROM {self._qualified(PENDING_TABLE)}"
        )
        params: list[Any] = []
        if batch is not None:
            statement += f" WHERE batch = {self.placeholder}"
            params.append(batch)
        rows = self._rows(statement + " ORDER BY fingerprint", params)
        return [PendingIntent(*row) for row in rows]

    def insert_index_statement(self) -> str:
        marks = ", ".join([self.placeholder] * 12)
        return f"INSERT INTO {self._qualified(INDEX_TABLE)} ({INDEX_COLUMNS}) VALUES ({marks})"

    def find_fingerprints(self, fingerprints: Sequence[str]) -> dict[str, IndexedAction]:
        """Which of these fingerprints are already recorded, and where."""
        found: dict[str, IndexedAction] = {}
        unique = sorted(set(fingerprints))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ", ".join([self.placeholder] * len(chunk))
            for fingerprint, db_id, version, position in self._rows(
                f"SELECT fingerprint, entity_id, version, position "
                f"FROM {self._qualified(INDEX_TABLE)} WHERE fingerprint IN ({marks})",
                chunk,
            ):
                found[fingerprint] = IndexedAction(self._uuid(db_id), version, position)
        return found

    def versions_until(self, entity_id: UUID, cutoff: Cutoff | None) -> tuple[int, int]:
        """The highest version and the number of versions of an entity within the cutoff."""
        statement = (
            f"SELECT MAX(a.version), COUNT(*) FROM {self._qualified(INDEX_TABLE)} a "
            f"WHERE a.entity_id = {self.placeholder}"
        )
        params: list[Any] = [self._db_id(entity_id)]
        if cutoff is not None:
            statement += " AND " + cutoff.condition(self.placeholder)
            params.append(cutoff.value)
        ((highest, count),) = self._rows(statement, params)
        return highest or 0, count

    def versions_within(self, entity_id: UUID, cutoff: Cutoff) -> list[int]:
        """Every version of an entity within an effective-time cutoff, in the order they took
        effect (ties in recorded order)."""
        rows = self._rows(
            f"SELECT a.version FROM {self._qualified(INDEX_TABLE)} a "
            f"WHERE a.entity_id = {self.placeholder} AND {cutoff.condition(self.placeholder)} "
            "ORDER BY COALESCE(a.effective_at, a.recorded_at), a.version",
            [self._db_id(entity_id), cutoff.value],
        )
        return [version for (version,) in rows]

    def position_of(self, entity_id: UUID, version: int) -> tuple[int, int]:
        """One version's log position and recorded time (microseconds)."""
        found = self.find_position(entity_id, version)
        if found is None:
            raise LookupError(f"entity {entity_id} has no version {version}")
        return found

    def find_position(self, entity_id: UUID, version: int) -> tuple[int, int] | None:
        """`position_of`, or None when the entity has no such version (one index seek)."""
        rows = self._rows(
            f"SELECT position, recorded_at FROM {self._qualified(INDEX_TABLE)} "
            f"WHERE entity_id = {self.placeholder} AND version = {self.placeholder}",
            [self._db_id(entity_id), version],
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def positions_of(self, entity_id: UUID) -> dict[int, tuple[int, int]]:
        """Each version's log position and recorded time (microseconds)."""
        rows = self._rows(
            f"SELECT version, position, recorded_at FROM {self._qualified(INDEX_TABLE)} "
            f"WHERE entity_id = {self.placeholder}",
            [self._db_id(entity_id)],
        )
        return {version: (position, recorded) for version, position, recorded in rows}

    def collection_page(
        self,
        system: str,
        collection: str,
        cutoff: Cutoff | None,
        after: tuple[str, int] | None,
        limit: int,
    ) -> list[CollectionRow]:
        """The next page of a collection's actions in (key, version) order."""
        return [
            CollectionRow(key, self._uuid(db_id), version, position, recorded, topic, bytes(state))
            for key, db_id, version, position, recorded, topic, state in self._collection_rows(
                "a.key, a.entity_id, a.version, a.position, a.recorded_at, e.topic, e.state",
                system,
                collection,
                cutoff,
                after,
                limit,
            )
        ]

    def collection_states(
        self,
        system: str,
        collection: str,
        cutoff: Cutoff | None,
        after: tuple[str, int] | None,
        limit: int,
    ) -> list[StateRow]:
        """`collection_page` as plain (key, version, position, recorded_at, state) tuples:
        what folding a collection needs, without an object and a parsed id per row."""
        return cast(
            list[StateRow],
            self._collection_rows(
                "a.key, a.version, a.position, a.recorded_at, e.state",
                system,
                collection,
                cutoff,
                after,
                limit,
            ),
        )

    def _collection_rows(
        self,
        columns: str,
        system: str,
        collection: str,
        cutoff: Cutoff | None,
        after: tuple[str, int] | None,
        limit: int,
    ) -> list[tuple[Any, ...]]:
        p = self.placeholder
        statement = (
            f"SELECT {columns} "
            f"FROM {self._qualified(INDEX_TABLE)} a "
            f"JOIN {self._qualified(self.events_table_name)} e "
            "ON e.originator_id = a.entity_id AND e.originator_version = a.version "
            f"WHERE a.system = {p} AND a.collection = {p}"
        )
        params: list[Any] = [system, collection]
        if cutoff is not None:
            statement += " AND " + cutoff.condition(p)
            params.append(cutoff.value)
        if after is not None:
            # Written so the (system, collection, key, version) index seeks to the page start:
            # a bare OR would make SQLite rescan from the collection's start on every page.
            statement += f" AND a.key >= {p} AND (a.key > {p} OR a.version > {p})"
            params.extend([after[0], after[0], after[1]])
        statement += f" ORDER BY a.key, a.version LIMIT {p}"
        params.append(limit)
        return self._rows(statement, params)

    def batch_totals(self) -> dict[str, tuple[int, int, int]]:
        """Per batch: number of actions, first and last log position."""
        rows = self._rows(
            f"SELECT batch, COUNT(*), MIN(position), MAX(position) "
            f"FROM {self._qualified(INDEX_TABLE)} GROUP BY batch",
            [],
        )
        return {batch: (count, first, last) for batch, count, first, last in rows}

    def batch_count(self, batch: str) -> int:
        ((count,),) = self._rows(
            f"SELECT COUNT(*) FROM {self._qualified(INDEX_TABLE)} WHERE batch = {self.placeholder}",
            [batch],
        )
        return int(count)

    def actions_matching(
        self,
        *,
        batches: Sequence[str] = (),
        workflow: str | None = None,
        after: Cutoff | None = None,
        system: str | None = None,
        collection: str | None = None,
        up_to: int | None = None,
        entity_ids: Sequence[UUID] = (),
        fingerprints: Sequence[str] = (),
    ) -> list[MatchedAction]:
        """Actions in a scope, oldest first. ``after`` keeps those beyond a cutoff (time or
        position), ``up_to`` those at or before a position; ``entity_ids`` and
        ``fingerprints`` (when given) keep those of these records or with these
        fingerprints."""
        where, params = self._scope(batches, workflow, None, after, system, collection, up_to)
        p = self.placeholder
        if entity_ids:
            where += f" AND a.entity_id IN ({', '.join([p] * len(entity_ids))})"
            params += [self._db_id(entity_id) for entity_id in entity_ids]
        if fingerprints:
            where += f" AND a.fingerprint IN ({', '.join([p] * len(fingerprints))})"
            params += list(fingerprints)
        rows = self._rows(
            "SELECT a.entity_id, a.version, a.position, a.fingerprint, a.system, a.collection, "
            f"a.key FROM {self._qualified(INDEX_TABLE)} a{where} ORDER BY a.position",
            params,
        )
        return [MatchedAction(self._uuid(row[0]), *row[1:]) for row in rows]

    @contextmanager
    def actions_after(
        self, position: int, *, system: str | None = None, collection: str | None = None
    ) -> Iterator[Iterator[MatchedAction]]:
        """The actions recorded after a log position, oldest first, read lazily (a rollback
        resumed after a million compensations has them all after its plan's position)."""
        where, params = self._scope((), None, position, None, system, collection, None)
        statement = (
            "SELECT a.entity_id, a.version, a.position, a.fingerprint, a.system, a.collection, "
            f"a.key FROM {self._qualified(INDEX_TABLE)} a{where} ORDER BY a.position"
        )
        uuid = self._uuid
        with self._stream(statement, params) as rows:
            yield (MatchedAction(uuid(row[0]), *row[1:]) for row in rows)

    @contextmanager
    def actions_by_record(
        self,
        *,
        batches: Sequence[str] = (),
        workflow: str | None = None,
        after: Cutoff | None = None,
        system: str | None = None,
        collection: str | None = None,
        up_to: int | None = None,
    ) -> Iterator[Iterator[MatchedAction]]:
        """The actions of a scope read lazily, each record's together (oldest first), the
        record whose newest action in the scope is newest first: the order a rollback
        undoes them in, without holding the scope in memory (the database sorts)."""
        where, params = self._scope(batches, workflow, None, after, system, collection, up_to)
        statement = (
            "SELECT a.entity_id, a.version, a.position, a.fingerprint, a.system, a.collection, "
            "a.key, MAX(a.position) OVER (PARTITION BY a.entity_id) AS newest "
            f"FROM {self._qualified(INDEX_TABLE)} a{where} ORDER BY newest DESC, a.version"
        )
        uuid = self._uuid
        with self._stream(statement, params) as rows:
            yield (MatchedAction(uuid(row[0]), *row[1:7]) for row in rows)

    def _scope(
        self,
        batches: Sequence[str],
        workflow: str | None,
        after_position: int | None,
        after: Cutoff | None,
        system: str | None,
        collection: str | None,
        up_to: int | None,
    ) -> tuple[str, list[Any]]:
        """The WHERE clause of a scope of actions over the index (aliased ``a``)."""
        p = self.placeholder
        conditions: list[str] = []
        params: list[Any] = []
        if batches:
            conditions.append(f"a.batch IN ({', '.join([p] * len(batches))})")
            params.extend(batches)
        for column, value in (
            ("workflow", workflow),
            ("system", system),
            ("collection", collection),
        ):
            if value is not None:
                conditions.append(f"a.{column} = {p}")
                params.append(value)
        if after_position is not None:
            conditions.append(f"a.position > {p}")
            params.append(after_position)
        if up_to is not None:
            conditions.append(f"a.position <= {p}")
            params.append(up_to)
        if after is not None:
            conditions.append(f"NOT ({after.condition(p)})")
            params.append(after.value)
        conditions.append("a.operation <> 'track'")  # seeing a record changed nothing
        return f" WHERE {' AND '.join(conditions)}", params

    def stored_events_of(
        self, table: str, entity_ids: Sequence[UUID]
    ) -> dict[UUID, list[StoredEvent]]:
        """Every stored event of many aggregates, ordered by version: one query per 200
        aggregates where the event store would make one per aggregate."""
        found: dict[UUID, list[StoredEvent]] = {}
        name = self._qualified(table)
        p = self.placeholder
        columns = "originator_id, originator_version, topic, state"
        for start in range(0, len(entity_ids), 200):
            page = entity_ids[start : start + 200]
            statement = " UNION ALL ".join(
                f"SELECT {columns} FROM {name} WHERE originator_id = {p}" for _ in page
            )
            rows = self._rows(statement, [self._db_id(entity_id) for entity_id in page])
            for db_id, version, topic, state in rows:
                entity_id = self._uuid(db_id)
                found.setdefault(entity_id, []).append(
                    StoredEvent(entity_id, version, topic, bytes(state))
                )
        for events in found.values():
            events.sort(key=lambda event: event.originator_version)
        return found

    def latest_stored_events(
        self, events_table: str, snapshots_table: str | None, entity_ids: Sequence[UUID]
    ) -> tuple[dict[UUID, StoredEvent], dict[UUID, list[StoredEvent]]]:
        """What rebuilds many aggregates: each one's latest snapshot (if any) and its events
        after that snapshot, ordered by version. One statement (so one transaction, one
        consistent read) per 500 aggregates, where the repository makes two per aggregate:
        the ids are a VALUES list joined to each table, every row found by its key."""
        snapshots: dict[UUID, StoredEvent] = {}
        events: dict[UUID, list[StoredEvent]] = {}
        p = self.placeholder
        events_name = self._qualified(events_table)
        for start in range(0, len(entity_ids), 500):
            chunk = entity_ids[start : start + 500]
            statement = f"WITH ids (id) AS (VALUES {', '.join([f'({p})'] * len(chunk))}) "
            selected = "e.originator_id, e.originator_version, e.topic, e.state"
            if snapshots_table is None:
                statement += (
                    f"SELECT 0, {selected} FROM ids JOIN {events_name} e "
                    "ON e.originator_id = ids.id"
                )
            else:
                snapshots_name = self._qualified(snapshots_table)
                latest = (
                    f"(SELECT MAX(s.originator_version) FROM {snapshots_name} s "
                    "WHERE s.originator_id = ids.id)"
                )
                statement += (
                    "SELECT 1, s.originator_id, s.originator_version, s.topic, s.state "
                    f"FROM ids JOIN {snapshots_name} s "
                    f"ON s.originator_id = ids.id AND s.originator_version = {latest} "
                    f"UNION ALL SELECT 0, {selected} FROM ids JOIN {events_name} e "
                    f"ON e.originator_id = ids.id AND e.originator_version > COALESCE({latest}, 0)"
                )
            for is_snapshot, db_id, version, topic, state in self._rows(
                statement, [self._db_id(entity_id) for entity_id in chunk]
            ):
                entity_id = self._uuid(db_id)
                stored = StoredEvent(entity_id, version, topic, bytes(state))
                if is_snapshot:
                    snapshots[entity_id] = stored
                else:
                    events.setdefault(entity_id, []).append(stored)
        for rows in events.values():
            rows.sort(key=lambda row: row.originator_version)
        return snapshots, events
