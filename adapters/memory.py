"""An in-memory adapter: for unit tests only, never the only proof."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ledger.ports import Record, Relation, Write, WriteResult, apply_write, check_expected


class MemoryAdapter:
    """Records in dicts; each write checks and applies atomically, like a real system would."""

    def __init__(
        self,
        system: str,
        collections: dict[str, dict[str, Record]] | None = None,
        *,
        relations: dict[str, tuple[Relation, ...]] | None = None,
    ):
        self.system = system
        self.collections = {name: dict(rows) for name, rows in (collections or {}).items()}
        self._relations = dict(relations or {})

    def normalize(self, collection: str, values: Record) -> Record:
        return values  # stored as given

    def assigns_keys(self, collection: str) -> bool:
        return False

    def relations(self, collection: str) -> tuple[Relation, ...]:
        return self._relations.get(collection, ())

    def read(self, collection: str, keys: Sequence[str]) -> dict[str, Record | None]:
        rows = self.collections.setdefault(collection, {})
        return {key: dict(rows[key]) if key in rows else None for key in keys}

    def scan(self, collection: str) -> Iterator[tuple[str, Record]]:
        rows = self.collections.setdefault(collection, {})
        for key in sorted(rows):
            yield key, dict(rows[key])

    def write(self, collection: str, writes: Sequence[Write]) -> list[WriteResult]:
        rows = self.collections.setdefault(collection, {})
        results = []
        for write in writes:
            current = rows.get(write.key)
            refused = check_expected(write.key, write, current)
            if refused is not None:
                results.append(refused)
                continue
            after = apply_write(write, current)
            if after is None:
                rows.pop(write.key)
            else:
                rows[write.key] = after
            results.append(WriteResult(write.key, "applied", dict(current) if current else None))
        return results

    def close(self) -> None:
        """Nothing to release."""
