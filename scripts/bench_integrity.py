"""Measure tamper evidence against raw hashing: verifying N stored events of ~700 bytes
(leaf hashes recomputed, compared, tree rebuilt, heads checked) versus one SHA-256 per event.

    .venv/bin/python scripts/bench_integrity.py [N]

Events come from a pool of 1,024 distinct payloads, so the run needs no gigabyte of memory;
the log's source builds its rows on the fly, as a store paging a table would.
"""

from __future__ import annotations

import hashlib
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from ledger.integrity import RecordedLeaf, StoredEvent, stored_event_bytes, verify_log
from ledger.merkle import PAGE, TreeBuilder, leaf_hash
from ledger.signing import generate_private_key, sign_tree_head

POOL = 1024


class SyntheticLog:
    """N events cycling through a pool of payloads, with their leaves and one signed head."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.payloads = [
            stored_event_bytes(i, f"contact-{i:06d}", 1, "ledger.domain:Changed", _state(i))
            for i in range(POOL)
        ]
        self.hashes = [leaf_hash(payload) for payload in self.payloads]

    def leaf_count(self) -> int:
        return self.size

    def leaves(self, start: int, stop: int) -> Sequence[RecordedLeaf]:
        hashes = self.hashes
        return [RecordedLeaf(i + 1, hashes[i % POOL]) for i in range(start, stop)]

    def stored_events(self) -> Iterator[StoredEvent]:
        payloads = self.payloads
        for i in range(self.size):
            yield StoredEvent(i + 1, payloads[i % POOL])


def _state(i: int) -> bytes:
    line = f'{{"field":"lifecycle_stage","before":"lead","after":"customer","n":{i}}}'
    return (line * 12)[:640].encode()


def best_of(runs: int, work: Callable[[], object]) -> float:
    """The fastest of a few runs: the machine is shared, and noise only ever adds time."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    log = SyntheticLog(size)
    payloads = log.payloads
    mean = sum(map(len, payloads)) / POOL
    print(f"{size:,} events of {mean:.0f} bytes on average, best of {runs} runs")

    def raw_hashing() -> None:
        sha256 = hashlib.sha256
        for i in range(size):
            sha256(payloads[i % POOL]).digest()

    def writer() -> bytes:
        builder = TreeBuilder()
        for i in range(size):
            builder.append(payloads[i % POOL])
        return builder.root()

    def reading() -> None:
        for _ in log.stored_events():
            pass
        for start in range(0, size, PAGE):
            log.leaves(start, min(start + PAGE, size))

    key = generate_private_key()
    head = sign_tree_head(key, size, writer(), datetime.now(UTC))

    def verifying() -> None:
        report = verify_log(log, [head], key.public_key())
        assert report.ok, report.first_break

    raw = best_of(runs, raw_hashing)
    write = best_of(runs, writer)
    read = best_of(runs, reading)
    verify = best_of(runs, verifying)
    for name, seconds in [
        ("raw SHA-256 of each event", raw),
        ("writer: leaf hash + tree step", write),
        ("reading the source alone", read),
        ("verify_log (read + hash + compare)", verify),
    ]:
        print(f"{name:36} {seconds:7.2f} s {size / seconds:12,.0f} events/s")
    print(
        f"throughput vs raw SHA-256: writer {raw / write:.2f}x, verify {raw / verify:.2f}x, "
        f"verify without the source's own reading {raw / (verify - read):.2f}x"
    )

    tracemalloc.start()
    verifying()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"verify_log peak traced memory: {peak / 2**20:.1f} MiB (one page of {PAGE:,} leaves)")


if __name__ == "__main__":
    main()
