"""The ledger's store: every SQL statement over the library's tables and the ledger's own.

- `rows`: the tables' names and the typed rows the queries answer with;
- `saving`: `SaveContext`, what a save writes in its events' transaction besides them;
- `indexed`: `IndexedRecorder`, the action index and its queries, shared by both backends;
- `sqlite`, `postgres`: one module per backend, the library's recorder and factory subclassed
  (selected by ``PERSISTENCE_MODULE``; imported only when that backend is opened);
- `pg_copy`: a PostgreSQL save's rows in binary COPY format (events, leaves, index rows);
- `locks`: record locks held by a run's chunk, per backend;
- `tree`: the Merkle tree's leaves and signed heads, written in each save's transaction, and the
  snapshot verification reads (`TreeSnapshot`, a `ledger.integrity.LeafSource`);
- `keyfile`: the signing key every save signs with, read from its file on first need;
- `library_seams`: every place the store or the application leans on library internals.
"""

from ledger.store.indexed import IndexedRecorder
from ledger.store.rows import (
    INDEX_TABLE,
    PENDING_TABLE,
    CollectionAction,
    CollectionRow,
    Cutoff,
    CutoffKind,
    IndexedAction,
    IndexEntry,
    MatchedAction,
    PendingIntent,
    StateRow,
    from_micros,
    to_micros,
)
from ledger.store.saving import SaveContext

__all__ = [
    "INDEX_TABLE",
    "PENDING_TABLE",
    "CollectionAction",
    "CollectionRow",
    "Cutoff",
    "CutoffKind",
    "IndexEntry",
    "IndexedAction",
    "IndexedRecorder",
    "MatchedAction",
    "PendingIntent",
    "SaveContext",
    "StateRow",
    "from_micros",
    "to_micros",
]
