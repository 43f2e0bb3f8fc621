"""Runs the workloads and their references, each in a fresh subprocess, and builds the rows."""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from bench import ROOT
from bench.report import Row
from bench.sizes import Sizes

ROWS = ("1", "2", "3", "4", "5", "6", "6b", "7", "8", "9", "10", "11", "12")
TIMES = "\N{MULTIPLICATION SIGN}"
FLAT_MIB = 10.0  # peak RSS counts as flat if it grows by at most this (or 10 %)
ROLLBACK_SECONDS = 15  # workload 6: the rollback of 100,000 changes takes less than this


class BenchError(RuntimeError):
    """A task failed, or a workload and its reference did not do the same work."""


class TaskTimeout(BenchError):
    """A task gave no result within the time allowed (it was killed)."""


class Suite:
    def __init__(
        self, sizes: Sizes, workdir: Path, log: Callable[[str], None], timeout: float = 900
    ) -> None:
        self.sizes = sizes
        self.timeout = timeout
        self.workdir = workdir
        self.log = log
        self.postgres_version = "not run"
        self._seeds: dict[int, tuple[str, int]] = {}
        self._targets: dict[int, str] = {}
        self._empty: str | None = None
        self._batches: dict[int, dict[str, Any]] = {}
        self._files = 0

    # Plumbing -----------------------------------------------------------------------

    def task(self, name: str, *, timeout: float | None = None, **params: Any) -> dict[str, Any]:
        """Run one task in a fresh Python process; its last stdout line is its JSON result."""
        timeout = min(timeout or self.timeout, self.timeout)
        started = time.perf_counter()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            # One signing key for every ledger of the run (created with the first), so copies
            # of a seeded ledger, SQLite or PostgreSQL, sign with the key that signed it.
            "LEDGER_SIGNING_KEY": str(self.workdir / "bench-ledger.key"),
        }
        try:
            process = subprocess.run(
                [sys.executable, "-m", "bench.child", name, json.dumps(params)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise TaskTimeout(f"no result in {timeout:.0f} s ({name} killed)") from None
        if process.returncode != 0:
            raise BenchError(
                f"task {name} failed (exit {process.returncode}):\n{process.stderr[-4000:]}"
            )
        result: dict[str, Any] = json.loads(process.stdout.strip().splitlines()[-1])
        self.log(
            f"  {name}: {time.perf_counter() - started:.1f} s wall, {result['rss_mib']:.0f} MiB"
        )
        return result

    def path(self, stem: str) -> str:
        self._files += 1
        return str(self.workdir / f"{self._files:02d}-{stem}")

    def seeded(self, n: int) -> tuple[str, int]:
        """A SQLite ledger with ``n`` records and the checkpoint after them (built once)."""
        if n not in self._seeds:
            self.log(f"seeding a SQLite ledger with {n:,} records (not timed)")
            db = self.path(f"seed-{n}.db")
            position = self.task("seed_ledger", db=db, n=n)["position"]
            _fold_wal(db)
            self._seeds[n] = (db, position)
        return self._seeds[n]

    def target(self, n: int) -> str:
        """A SQLite `contacts` table of ``n`` rows, the seed records' values (built once)."""
        if n not in self._targets:
            self.log(f"a {n:,}-row SQLite table (not timed)")
            self._targets[n] = self.path(f"target-{n}.db")
            self.task("seed_target", target=self._targets[n], n=n)
        return self._targets[n]

    def empty(self, stem: str) -> str:
        """A copy of a new, empty SQLite ledger (built once)."""
        if self._empty is None:
            self._empty = self.path("empty.db")
            self.task("empty_ledger", db=self._empty)
            _fold_wal(self._empty)
        return self.copy_file(self._empty, stem)

    def copy(self, n: int) -> str:
        source, _ = self.seeded(n)
        return self.copy_file(source, f"copy-{n}.db")

    def copy_file(self, source: str, stem: str) -> str:
        target = self.path(stem)
        shutil.copyfile(source, target)
        return target

    # Workloads 1 and 2 ------------------------------------------------------------------

    def ledger_batch(self, n: int) -> dict[str, Any]:
        """Workload 1 at one size (run once), then its rows exported by a process of their own
        (not timed, so the export weighs on no peak RSS)."""
        if n not in self._batches:
            self.log(f"workload 1: the ledger records {n:,} updates in one batch")
            db = self.copy(n)
            ledger = self.task("ledger_batch", db=db, n=n)
            rows = self.path(f"batch-{n}-rows.pickle")
            written = self.task(
                "export_batch", db=db, table=ledger["table"], after=ledger["after"], path=rows
            )
            if written["index_rows"] != n:
                raise BenchError(f"workload 1: the ledger recorded {written['index_rows']}")
            # The ledger's own figures (its peak RSS among them) win over the export's.
            self._batches[n] = {**written, **ledger, "rows": rows}
        return self._batches[n]

    def row_1(self) -> list[Row]:
        sizes = self.sizes.batch
        rows = []
        for letter, n in zip("abcdefgh", sizes, strict=False):
            ledger = self.ledger_batch(n)
            self.log(f"workload 1: the floor (sqlite3 executemany of the same {n:,} rows)")
            floor = self.task(
                "raw_batch_chunks", db=self.copy(n), table=ledger["table"], rows=ledger["rows"]
            )
            row = _compared(
                Row(
                    f"1{letter}" if len(sizes) > 1 else "1",
                    f"record {n:,} updates in one batch (`record_stream`: `record_all` without "
                    "a receipt per action), SQLite, idempotency + time index",
                    "raw `sqlite3` `executemany` of the same event + index rows, one "
                    "transaction (the floor)",
                    f"≥ 0.5{TIMES} the floor; peak RSS flat",
                ),
                ledger,
                floor,
            )
            size = ledger["state_bytes"] / ledger["events"]
            row.notes.append(
                f"the ledger wrote {ledger['events']:,} event rows ({size:.0f} bytes of state "
                f"each) and {ledger['index_rows']:,} index rows; the floor stored exactly these "
                "rows into its own copy of the same seeded database, loading them in chunks "
                "off the clock"
            )
            rows.append(row)
        first, last, flat = _flat(rows)
        for row in rows:
            row.met = row.ratio is not None and row.ratio >= 0.5 and flat
        if len(rows) > 1:
            rows[-1].extra = f"RSS {round(last - first):+d} MiB vs {sizes[0]:,}"
            rows[-1].notes.append(
                f"ledger peak RSS {first:.0f} MiB at {sizes[0]:,} updates and {last:.0f} MiB "
                f"at {sizes[-1]:,}: "
                + ("flat" if flat else "NOT flat")
                + f" (flat means at most +{FLAT_MIB:.0f} MiB or +10 %)"
            )
        return rows

    def row_2(self) -> list[Row]:
        n = self.sizes.batch[0]
        ledger = self.ledger_batch(n)
        self.log(f"workload 2: seeding a plain eventsourcing application with {n:,} records")
        db = self.path(f"plain-{n}.db")
        self.task("seed_plain", db=db, n=n)
        self.log("workload 2: the plain application saves the same changes")
        plain = self.task("plain_batch", db=db, n=n)
        row = _compared(
            Row(
                "2",
                f"the same {n:,} updates (the ledger figure of row 1)",
                "plain eventsourcing `Application` (JSON transcoder, `eventsourcing.sqlite`): "
                "`repository.get`, one event each, one `save()`",
                f"≥ 2{TIMES} its rate",
            ),
            ledger,
            plain,
        )
        row.met = row.ratio is not None and row.ratio >= 2
        save_only = plain["save_seconds"] / ledger["seconds"]
        row.notes.append(
            f"the plain application spent {plain['save_seconds']:.2f} s of "
            f"{plain['seconds']:.2f} s in `save()`; against `save()` alone the ledger's ratio "
            f"is {save_only:.2f}{TIMES}"
        )
        return [row]

    # Workload 3 -------------------------------------------------------------------------

    def row_3(self) -> list[Row]:
        n = self.sizes.single
        self.log(f"workload 3: the ledger records {n:,} updates one at a time")
        rows = self.path("single-rows.pickle")
        ledger = self.task("ledger_single", db=self.copy(n), n=n, export=rows)
        self.log("workload 3: raw sqlite3, one insert + commit per action")
        raw = self.task("raw_single", db=self.copy(n), rows=rows)
        row = _compared(
            Row(
                "3",
                f"record {n:,} updates one at a time (`record`), each committed, SQLite",
                "raw `sqlite3`: per action BEGIN, insert event + index row, COMMIT "
                "(WAL, synchronous=FULL)",
                f"≥ 0.8{TIMES} its rate",
            ),
            ledger,
            raw,
        )
        row.met = row.ratio is not None and row.ratio >= 0.8
        return [row]

    # Workload 4 (and 8b/8c) -----------------------------------------------------------------

    def point_in_time(self, db: str, ids: tuple[str, str], backend: str) -> list[Row]:
        versions = self.sizes.history
        self.log(f"workload 4 ({backend}): one record with {versions:,} versions (not timed)")
        history = self.task("seed_history", db=db, versions=versions)
        rng = random.Random(8)
        kinds = {
            "time": [
                rng.randint(history["first"], history["last"]) for _ in range(self.sizes.samples)
            ],
            "version": [rng.randint(1, history["versions"]) for _ in range(self.sizes.samples)],
        }
        samples = [(kind, value) for kind, values in kinds.items() for value in values]
        self.log(f"workload 4 ({backend}): {len(samples)} ledger samples")
        ledger = self.task("ledger_state", db=db, samples=samples)
        subset = [(kind, v) for kind, values in kinds.items() for v in values[: self.sizes.replay]]
        self.log(f"workload 4 ({backend}): {len(subset)} full replays (reference)")
        replay = self.task("replay_state", db=db, samples=subset)
        rows = []
        for row_id, kind in zip(ids, kinds, strict=True):
            mine = [i for i, (k, _) in enumerate(samples) if k == kind]
            shared = [i for i, (k, _) in enumerate(samples) if k == kind][: self.sizes.replay]
            theirs = [i for i, (k, _) in enumerate(subset) if k == kind]
            if [ledger["results"][i] for i in shared] != [replay["results"][i] for i in theirs]:
                raise BenchError(f"workload 4 ({backend}, {kind}): ledger and replay disagree")
            durations = [ledger["durations"][i] for i in mine]
            median = statistics.median(durations) * 1000
            ledger_time = sum(ledger["durations"][i] for i in shared)
            replay_time = sum(replay["durations"][i] for i in theirs)
            what = "a random time T" if kind == "time" else "a random version"
            row = Row(
                row_id,
                f"state of one record with {versions:,} versions at {what} "
                f"(`state(address, Point('{kind}', …))`), {len(durations)} samples, {backend}",
                "full replay from version 1, no snapshots (read + decode + fold every event "
                f"up to the point), first {len(theirs)} of the same samples",
                f"median ≤ 2 ms; ≥ 20{TIMES} replay" if backend == "SQLite" else "reported",
                unit="states/s",
                ledger_rate=len(durations) / sum(durations),
                reference_rate=len(theirs) / replay_time,
                ratio=replay_time / ledger_time,
                rss=(ledger["rss_mib"], replay["rss_mib"]),
                extra=f"median {median:.2f} ms",
            )
            if backend == "SQLite":
                row.met = median <= 2 and row.ratio is not None and row.ratio >= 20
            replay_median = statistics.median(replay["durations"][i] for i in theirs) * 1000
            p90 = statistics.quantiles(durations, n=10)[-1] * 1000 if len(durations) > 1 else median
            row.notes.append(
                f"ratio over the {len(theirs)} samples both ran (identical results on each); "
                f"replay median {replay_median:.1f} ms, ledger p90 {p90:.2f} ms"
            )
            rows.append(row)
        return rows

    def row_4(self) -> list[Row]:
        return self.point_in_time(self.path("history.db"), ("4a", "4b"), "SQLite")

    # Workload 5 -------------------------------------------------------------------------

    def row_5(self) -> list[Row]:
        rows: list[Row] = []
        for letter, n in zip("abcdefgh", self.sizes.collection, strict=False):
            db, position = self.seeded(n)
            self.log(f"workload 5: stream {n:,} records as of the checkpoint")
            ledger = self.task("ledger_collection", db=db)
            raw = self.task("raw_collection", db=db, position=position)
            if ledger["count"] != n or raw["count"] != n:
                counts = f"{ledger['count']} / {raw['count']}"
                raise BenchError(f"workload 5: {counts} records, not {n}")
            row = _compared(
                Row(
                    f"5{letter}",
                    f"a collection of {n:,} records as of a checkpoint, streamed "
                    "(`collection(…, Point('checkpoint', …))`), SQLite",
                    "raw `sqlite3` `SELECT` of the same index ⋈ event rows (one query)",
                    "≥ 25 % of raw; peak RSS flat from smallest to largest",
                    unit="records/s",
                ),
                ledger,
                raw,
            )
            rows.append(row)
        first, last, flat = _flat(rows)
        for row in rows:
            row.met = row.ratio is not None and row.ratio >= 0.25 and flat
        if len(rows) > 1:
            growth = round(last - first)
            rows[-1].extra = f"RSS {growth:+d} MiB vs {self.sizes.collection[0]:,}"
            rows[-1].notes.append(
                f"ledger peak RSS {first:.0f} MiB at {self.sizes.collection[0]:,} records and "
                f"{last:.0f} MiB at {self.sizes.collection[-1]:,}: "
                + ("flat" if flat else "NOT flat")
                + f" (flat means at most +{FLAT_MIB:.0f} MiB or +10 %)"
            )
        return rows

    # Workload 6 -------------------------------------------------------------------------

    def row_6(self) -> list[Row]:
        sizes = self.sizes.rollback
        rows = [self.rollback(f"6 ({_short(n)})", n) for n in sizes]
        first, last, flat = _flat(rows)
        for n, row in zip(sizes, rows, strict=True):
            fast = n > 100_000 or cast(float, row.ledger_rate) * ROLLBACK_SECONDS >= n
            row.met = row.ratio is not None and row.ratio >= 0.3 and fast and flat
        if len(rows) > 1:
            rows[-1].extra = f"RSS {round(last - first):+d} MiB vs {sizes[0]:,}"
            rows[-1].notes.append(
                f"ledger peak RSS {first:.0f} MiB at {sizes[0]:,} changes and {last:.0f} MiB at "
                f"{sizes[-1]:,}: "
                + ("flat" if flat else "NOT flat")
                + f" (flat means at most +{FLAT_MIB:.0f} MiB or +10 %)"
            )
        return rows

    def rollback(self, row_id: str, n: int) -> Row:
        """Row 6 at one size: the rollback, its rows exported (untimed), the reference."""
        self.log(
            f"workload 6: a {n:,}-row SQLite table, its ledger, and a bad batch of {n:,} updates "
            "recorded and written (not timed)"
        )
        ledger_db, target = self.path(f"rollback-{n}.db"), self.path(f"rollback-target-{n}.db")
        seed = self.task("seed_rollback", db=ledger_db, target=target, n=n)
        _fold_wal(ledger_db)
        self.log(f"workload 6: the ledger plans and applies the rollback of {n:,} changes")
        db = self.copy_file(ledger_db, f"rollback-copy-{n}.db")
        ledger = self.task(
            "ledger_rollback",
            db=db,
            target=self.copy_file(target, f"rollback-target-copy-{n}.db"),
            n=n,
        )
        rows_file = self.path(f"rollback-{n}-rows.pickle")
        written = self.task(
            "export_rollback", db=db, table=ledger["table"], after=ledger["after"], path=rows_file
        )
        if written["events"] != n or written["index_rows"] != n:
            raise BenchError(f"workload 6: the ledger recorded {written} compensations, not {n}")
        self.log("workload 6: raw read + UPDATE … WHERE id = ? + insert of the same rows")
        raw = self.task(
            "raw_rollback",
            target=self.copy_file(target, f"rollback-target-raw-{n}.db"),
            db=self.copy_file(ledger_db, f"rollback-raw-{n}.db"),
            table=ledger["table"],
            rows=rows_file,
            n=n,
        )
        if not ledger["digest"] == raw["digest"] == seed["digest"]:
            raise BenchError(
                "workload 6: the table after the rollback differs from the one before the bad "
                "batch, or from the reference's"
            )
        row = _compared(
            Row(
                row_id,
                f"plan + apply the rollback of a {n:,}-change batch through the SQL adapter "
                "(SQLite target), compensations recorded",
                "raw recorded restore: streaming `SELECT` of the rows, `UPDATE … WHERE id = ?` "
                "`executemany` in one transaction, then `executemany` of the same compensating "
                "event + index rows into a copy of the ledger, one transaction",
                f"≥ 0.3{TIMES} the reference"
                + (f", under {ROLLBACK_SECONDS} s" if n <= 100_000 else "")
                + ", memory flat",
                unit="rows/s",
            ),
            ledger,
            raw,
        )
        row.notes.append(
            f"plan {ledger['plan_seconds']:.2f} s ({n / ledger['plan_seconds']:,.0f} rows/s), "
            f"apply {ledger['apply_seconds']:.2f} s ({n / ledger['apply_seconds']:,.0f} rows/s), "
            f"{ledger['seconds']:.1f} s in all; {ledger['compensations']:,} compensations "
            f"planned, all restored, verification clean, {ledger['recorded']:,} compensating "
            "actions recorded in the ledger; the table then equals the one from before the bad "
            "batch, as does the reference's"
        )
        return row

    def row_6b(self) -> list[Row]:
        n = self.sizes.forward
        self.log(f"workload 6b: a {n:,}-row SQLite table and its ledger (not timed)")
        ledger_db, target = self.path(f"forward-{n}.db"), self.path(f"forward-target-{n}.db")
        self.task("seed_apply", db=ledger_db, target=target, n=n)
        _fold_wal(ledger_db)
        self.log(f"workload 6b: the ledger applies {n:,} changes through the SQL adapter")
        db = self.copy_file(ledger_db, f"forward-copy-{n}.db")
        ledger = self.task(
            "ledger_apply",
            db=db,
            target=self.copy_file(target, f"forward-target-copy-{n}.db"),
            n=n,
        )
        rows = self.path(f"forward-{n}-rows.pickle")
        written = self.task(
            "export_batch", db=db, table=ledger["table"], after=ledger["after"], path=rows
        )
        self.log("workload 6b: raw read + UPDATE of the same rows + insert of the same rows")
        raw = self.task(
            "raw_apply",
            db=self.copy_file(ledger_db, f"forward-raw-{n}.db"),
            target=self.copy_file(target, f"forward-target-raw-{n}.db"),
            table=ledger["table"],
            rows=rows,
            n=n,
        )
        if ledger["digest"] != raw["digest"] or raw["index_rows"] != written["index_rows"]:
            raise BenchError("workload 6b: the ledger's table or rows differ from the reference's")
        row = _compared(
            Row(
                "6b",
                f"apply {n:,} changes forward through the SQL adapter (SQLite target; "
                "`ledger apply`'s path: `Run.apply`), each recorded",
                "raw `sqlite3`: read the rows, `UPDATE … WHERE id = ?` them (one transaction), "
                "insert the same event + index rows (one transaction)",
                f"≥ 0.3{TIMES} the reference",
                unit="rows/s",
            ),
            ledger,
            raw,
        )
        row.met = row.ratio is not None and row.ratio >= 0.3
        row.notes.append(
            f"the ledger wrote {written['events']:,} event rows and {written['index_rows']:,} "
            f"index rows; the reference read the rows in {raw['read_seconds']:.2f} s, updated "
            f"them in {raw['update_seconds']:.2f} s and stored exactly the ledger's rows in "
            f"{raw['insert_seconds']:.2f} s; both tables then hold the same rows"
        )
        return [row]

    # Workload 7 and PostgreSQL -----------------------------------------------------------

    def row_7(self) -> list[Row]:
        rows: list[Row] = []
        for letter, n in zip("abcdefgh", self.sizes.reconcile, strict=False):
            db, position = self.seeded(n)
            target = self.target(n)
            self.log(f"workload 7: reconcile a {n:,}-row table against the ledger")
            ledger = self.task("ledger_reconcile", db=db, target=target)
            raw = self.task("raw_reconcile", db=db, target=target, position=position)
            if ledger["count"] != n or raw["count"] != n:
                raise BenchError(f"workload 7: {ledger['count']} / {raw['count']} rows, not {n}")
            rows.append(
                _compared(
                    Row(
                        f"7{letter}",
                        f"reconcile a {n:,}-row SQLite table against the ledger's projection "
                        "(`reconcile.compare`, both sides streamed in key order)",
                        "raw streaming read of both sides: the ledger's index ⋈ event rows, "
                        "then the table",
                        f"≥ 0.6{TIMES} the reference; peak RSS < 500 MiB and flat",
                        unit="rows/s",
                    ),
                    ledger,
                    raw,
                )
            )
        first, last, flat = _flat(rows)
        flat = flat and last < 500
        for row in rows:
            row.met = flat and row.ratio is not None and row.ratio >= 0.6
        rows[-1].notes.append(
            f"ledger peak RSS {first:.0f} MiB at {self.sizes.reconcile[0]:,} rows and "
            f"{last:.0f} MiB at {self.sizes.reconcile[-1]:,}: "
            + ("flat and under 500 MiB" if flat else "NOT flat or over 500 MiB")
        )
        return rows

    def row_8(self, postgres: Any) -> list[Row]:
        self.postgres_version = postgres.version()
        largest = max(self.sizes.pg_batch)
        self.log(f"workload 8: seeding a PostgreSQL ledger with {largest:,} records (not timed)")
        seed = postgres.create()
        self.task("seed_ledger", db=seed, n=largest)
        rows = [self.pg_batch(postgres, seed, n) for n in self.sizes.pg_batch]
        return [*rows, *self.point_in_time(postgres.create(), ("8b", "8c"), "PostgreSQL")]

    def pg_batch(self, postgres: Any, seed: str, n: int) -> Row:
        """Row 1 on PostgreSQL: the first ``n`` records of the seeded database are updated."""
        several = len(self.sizes.pg_batch) > 1
        row = Row(
            f"8a ({n:,})" if several else "8a",
            f"row 1 on PostgreSQL: {n:,} updates in one batch",
            "raw `psycopg` `COPY` of the same event + index rows, one transaction, "
            "events table locked as the library locks it",
            f"≥ 0.5{TIMES} raw",
        )
        rows_file = self.path(f"pg-batch-{n}-rows.pickle")
        self.log(f"workload 8: the ledger records {n:,} updates in one batch on PostgreSQL")
        try:
            # ~5,000 actions/s: allow several times that before calling it hung.
            ledger = self.task(
                "ledger_pg_batch",
                db=postgres.copy(seed),
                n=n,
                export=rows_file,
                timeout=max(60.0, n / 300),
            )
        except TaskTimeout as error:
            row.status = f"**hung**: {error}"
            row.met = False
            row.notes.append("the ledger's `record_all` did not return in time")
            return row
        self.log("workload 8: raw psycopg COPY of the same rows")
        raw = self.task("raw_batch", db=postgres.copy(seed), rows=rows_file)
        _compared(row, ledger, raw)
        row.met = row.ratio is not None and row.ratio >= 0.5
        row.notes.append(
            f"{ledger['events']:,} event rows, {ledger['state_bytes'] / 2**20:.1f} MiB of event "
            "state in one `save()`"
        )
        return row

    # Workload 9 ---------------------------------------------------------------------------

    def row_9(self) -> list[Row]:
        sizes = self.sizes.track
        rows = [self.track(f"9{letter}", n) for letter, n in zip("abcdefgh", sizes, strict=False)]
        measured = [(n, r) for n, r in zip(sizes, rows, strict=False) if r.status is None]
        if not measured:
            return rows
        first, last, flat = _flat([row for _, row in measured])
        for _, row in measured:
            row.met = row.ratio is not None and row.ratio >= 0.3 and flat
        if len(measured) > 1:
            (smallest, _), (largest, row) = measured[0], measured[-1]
            row.extra = f"RSS {round(last - first):+d} MiB vs {smallest:,}"
            row.notes.append(
                f"ledger peak RSS {first:.0f} MiB at {smallest:,} rows and {last:.0f} MiB at "
                f"{largest:,}: "
                + ("flat" if flat else "NOT flat")
                + f" (flat means at most +{FLAT_MIB:.0f} MiB or +10 %)"
            )
        return rows

    def track(self, row_id: str, n: int) -> Row:
        """Row 9 at one size: the baseline, its rows exported (untimed), the reference."""
        target = self.target(n)
        row = Row(
            row_id,
            f"baseline of a {n:,}-row SQLite table into an empty SQLite ledger "
            "(`ledger track`, `tracking.track`) through the SQL adapter, streamed",
            "raw streaming `SELECT` of the same table, then raw `sqlite3` `executemany` of the "
            "same event + index rows into a copy of the same empty ledger, one transaction "
            "(WAL, synchronous=FULL)",
            f"≥ 0.3{TIMES} the reference, memory flat",
            unit="rows/s",
        )
        self.log(f"workload 9: the ledger takes a baseline of the {n:,}-row table")
        db = self.empty(f"track-{n}.db")
        try:
            ledger = self.task("ledger_track", db=db, target=target, n=n)
        except TaskTimeout as error:
            row.status, row.met = f"**timed out**: {error}", False
            return row
        rows_file = self.path(f"track-{n}-rows.pickle")
        written = self.task(
            "export_track", db=db, table=ledger["table"], after=ledger["after"], path=rows_file
        )
        if written["index_rows"] != n:
            raise BenchError(f"workload 9: the ledger recorded {written['index_rows']} actions")
        self.log("workload 9: raw read of the table + sqlite3 insert of the same rows")
        raw = self.task(
            "raw_track",
            db=self.empty(f"track-raw-{n}.db"),
            target=target,
            table=ledger["table"],
            rows=rows_file,
        )
        if raw["count"] != n or raw["events"] != written["events"]:
            raise BenchError(f"workload 9: the reference read {raw['count']} rows, not {n}")
        _compared(row, ledger, raw)
        size = written["state_bytes"] / written["events"]
        row.notes.append(
            f"the ledger committed every {written['commit_every']:,} records (chunks of "
            f"{written['chunk']:,} in one held write transaction) and wrote "
            f"{written['events']:,} event rows ({size:.0f} bytes of state each) and "
            f"{written['index_rows']:,} index rows; the reference read the table in "
            f"{raw['read_seconds']:.2f} s and stored exactly these rows in "
            f"{raw['insert_seconds']:.2f} s"
        )
        return row

    # Workload 10 --------------------------------------------------------------------------

    def row_10(self) -> list[Row]:
        n = self.sizes.verify
        self.log(f"workload 10: a SQLite ledger of {n:,} events through its recorder (not timed)")
        db = self.path(f"verify-{n}.db")
        seed = self.task("seed_verify", db=db, n=n)
        _fold_wal(db)
        self.log(f"workload 10: the ledger verifies its {seed['size']:,} events")
        ledger = self.task("ledger_verify", db=db)
        self.log("workload 10: raw sqlite3 read + SHA-256 of the same rows")
        raw = self.task("raw_verify", db=db)
        if ledger["count"] != raw["count"] or ledger["count"] != seed["size"]:
            raise BenchError(
                f"workload 10: verified {ledger['count']} events, the reference read "
                f"{raw['count']}, the seed wrote {seed['size']}"
            )
        row = _compared(
            Row(
                "10",
                f"verify a SQLite ledger of {ledger['count']:,} events (`ledger verify`: every "
                "leaf recomputed from the stored bytes, the Merkle tree rebuilt, every kept "
                "signed head checked)",
                "raw `sqlite3` streaming `SELECT` of the same event rows, one SHA-256 of each "
                "row's stored bytes",
                f"≥ 0.5{TIMES} the reference",
                unit="events/s",
            ),
            ledger,
            raw,
        )
        row.met = row.ratio is not None and row.ratio >= 0.5
        row.notes.append(
            f"{ledger['heads']} signed heads checked; seeded in transactions of 20,000 events "
            "through the ledger's recorder (leaves and a signed head in each)"
        )
        return [row]

    # Workload 11 --------------------------------------------------------------------------

    def row_11(self, postgres: Any) -> list[Row]:
        n = self.sizes.recovery
        self.log(f"workload 11: a PostgreSQL ledger with {n:,} unsettled writes (not timed)")
        seed, target = postgres.create(), self.path(f"recovery-{n}.db")
        self.task("seed_recovery", db=seed, target=target, n=n)
        self.log(f"workload 11: the ledger recovers its {n:,} unsettled writes")
        ledger = self.task("ledger_recover", db=postgres.copy(seed), target=target)
        self.log("workload 11: the per-write recovery of the same writes")
        reference = self.task("per_write_recover", db=postgres.copy(seed), target=target)
        if ledger["statuses"] != reference["statuses"] or ledger["count"] != n:
            raise BenchError(
                f"workload 11: recovered {ledger['statuses']}, per write {reference['statuses']}"
            )
        row = _compared(
            Row(
                "11",
                f"`ledger recover` of {n:,} unsettled writes on PostgreSQL (half landed, "
                "recorded as actions; half not, settled as not applied) through the SQL adapter",
                "the recovery before this round, in the same run: per write one intent read, "
                "one target read, one settle transaction",
                f"≥ 10{TIMES} the reference",
                unit="writes/s",
            ),
            ledger,
            reference,
        )
        row.met = row.ratio is not None and row.ratio >= 10
        row.notes.append(f"outcomes {ledger['statuses']}, identical on both sides")
        return [row]

    @staticmethod
    def recovery_skipped(reason: str) -> list[Row]:
        return [
            Row("11", "recovery on PostgreSQL", "per-write recovery", f"≥ 10{TIMES}", status=reason)
        ]

    # Workload 12 ---------------------------------------------------------------------------

    def row_12(self, postgres: bool = True) -> list[Row]:
        from bench.http_tasks import row_12  # the HTTP API under load: a module of its own

        return row_12(self, postgres)

    @staticmethod
    def postgres_skipped(reason: str) -> list[Row]:
        return [
            Row(
                "8a",
                "row 1 on PostgreSQL",
                "raw `psycopg` `COPY`",
                f"≥ 0.5{TIMES} raw",
                status=reason,
            ),
            Row("8b", "row 4 (time) on PostgreSQL", "full replay", "reported", status=reason),
            Row("8c", "row 4 (version) on PostgreSQL", "full replay", "reported", status=reason),
        ]


def _flat(rows: list[Row]) -> tuple[float, float, bool]:
    """The ledger's peak RSS at the smallest and largest size, and whether it stayed flat."""
    first = rows[0].rss[0] if rows[0].rss else 0.0
    last = rows[-1].rss[0] if rows[-1].rss else 0.0
    return first, last, last - first <= max(FLAT_MIB, 0.1 * first)


def _short(n: int) -> str:
    """1000000 as 1M, 100000 as 100k: a size in a row's id."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def _fold_wal(db: str) -> None:
    """Fold a SQLite ledger's WAL into its file, so a copy of the file is whole."""
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def _compared(row: Row, ledger: dict[str, Any], reference: dict[str, Any]) -> Row:
    row.ledger_rate = ledger["count"] / ledger["seconds"]
    row.reference_rate = reference["count"] / reference["seconds"]
    row.ratio = row.ledger_rate / row.reference_rate
    row.rss = (ledger["rss_mib"], reference["rss_mib"])
    return row
