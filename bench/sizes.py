"""Workload sizes: the defaults of the full run, the tiny ones of ``--quick``, ``--sizes``."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

TUPLES = ("batch", "collection", "reconcile", "pg_batch", "track", "rollback")  # take lists


@dataclass(frozen=True)
class Sizes:
    # workload 1: actions in one batch (workload 2: the smallest of these)
    batch: tuple[int, ...] = (100_000, 1_000_000)
    single: int = 2_000  # workload 3: actions recorded one at a time
    history: int = 10_000  # workload 4: versions of the one record
    samples: int = 200  # workload 4: ledger samples per kind (time, version)
    replay: int = 20  # workload 4: of those, how many the full-replay reference also runs
    collection: tuple[int, ...] = (10_000, 100_000)  # workload 5: records in the collection
    rollback: tuple[int, ...] = (100_000, 1_000_000)  # workload 6: changes rolled back
    forward: int = 100_000  # workload 6b: changes applied through the SQL adapter
    reconcile: tuple[int, ...] = (100_000, 1_000_000)  # workload 7: rows of the table
    pg_batch: tuple[int, ...] = (10_000, 100_000)  # workload 8: actions in one batch on PostgreSQL
    track: tuple[int, ...] = (100_000, 1_000_000)  # workload 9: rows of the table baselined
    verify: int = 1_000_000  # workload 10: events in the ledger verified
    http: int = 20_000  # workload 12: record requests to `ledger serve` (and to the floor)
    recovery: int = 1_000  # workload 11: unsettled writes recovered

    def with_overrides(self, text: str) -> Sizes:
        """``key=value,…``; the tuples (`TUPLES`) take sizes separated by ``:`` (e.g.
        collection=10000:100000)."""
        changes: dict[str, object] = {}
        names = {f.name for f in fields(self)}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key not in names:
                raise ValueError(f"--sizes item {item!r}: expected one of {', '.join(names)}=N")
            if key in TUPLES:
                changes[key] = tuple(sorted(int(v) for v in value.split(":")))
            else:
                changes[key] = int(value)
        sizes = replace(self, **changes)  # type: ignore[arg-type]
        if any(not getattr(sizes, key) or min(getattr(sizes, key)) < 1 for key in TUPLES):
            raise ValueError(f"--sizes: {', '.join(TUPLES)} need sizes of at least 1")
        if (
            min(sizes.forward, sizes.single, sizes.samples, sizes.verify, sizes.recovery) < 1
            or sizes.http < 100
            or sizes.history < 2
        ):
            raise ValueError(
                "--sizes: sizes must be at least 1 (history at least 2, http at least 100)"
            )
        return replace(sizes, replay=max(1, min(sizes.replay, sizes.samples)))

    def describe(self) -> str:
        return ", ".join(
            f"{f.name}={':'.join(map(str, v)) if isinstance(v, tuple) else v}"
            for f in fields(self)
            for v in [getattr(self, f.name)]
        )


QUICK = Sizes(
    batch=(100, 300),
    single=100,
    history=300,
    samples=20,
    replay=10,
    collection=(100, 300),
    rollback=(100, 300),
    forward=300,
    reconcile=(100, 300),
    pg_batch=(300,),
    track=(100, 300),
    verify=2_000,
    http=200,
    recovery=40,
)
