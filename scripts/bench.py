#!/usr/bin/env python3
"""The benchmark suite of issue 8: runs each workload against its reference in the same run
and writes a Markdown report (``docs/performance.md`` by default).

    scripts/bench                       # the full run (SQLite and PostgreSQL)
    scripts/bench --quick               # tiny sizes, a few seconds; report to a temp file
    scripts/bench --only 1,4 --sizes batch=20000 --no-postgres --output /tmp/perf.md
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import ROOT
from bench.pg import Postgres
from bench.report import Row, code_version, render
from bench.sizes import QUICK, Sizes
from bench.suite import ROWS, BenchError, Suite

DEFAULT_OUTPUT = ROOT / "docs" / "performance.md"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (every row still runs)")
    parser.add_argument(
        "--sizes", default="", help="overrides, e.g. batch=20000,collection=1000:10000"
    )
    parser.add_argument("--only", default="", help=f"rows to run, e.g. 1,4 (of {','.join(ROWS)})")
    parser.add_argument("--no-postgres", action="store_true", help="skip rows 8, 12 (PostgreSQL)")
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds one task may take before it counts as hung (default 900; 120 with --quick)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"report path (default {DEFAULT_OUTPUT}; with --quick, a temporary file)",
    )
    args = parser.parse_args(argv)
    try:
        args.sizes = (QUICK if args.quick else Sizes()).with_overrides(args.sizes)
    except ValueError as error:
        parser.error(str(error))
    args.only = {part.strip() for part in args.only.split(",") if part.strip()} or set(ROWS)
    unknown = sorted(args.only - set(ROWS))
    if unknown:
        parser.error(f"--only: no row {unknown[0]!r}; rows are {', '.join(ROWS)}")
    if args.timeout is None:
        args.timeout = 120.0 if args.quick else 900.0
    if args.output is None:
        args.output = (
            Path(tempfile.mkstemp(prefix="changeledger-perf-", suffix=".md")[1])
            if args.quick
            else DEFAULT_OUTPUT
        )
    return args


def run_rows(suite: Suite, only: set[str], postgres: bool) -> list[Row]:
    rows: list[Row] = []
    for number in ROWS:
        if number not in only:
            rows.append(Row(number, f"row {number}", "—", "—", status="not run (--only)"))
        elif number == "8":
            rows += run_postgres(suite, postgres, suite.row_8, suite.postgres_skipped)
        elif number == "11":
            rows += run_postgres(suite, postgres, suite.row_11, suite.recovery_skipped)
        elif number == "12":
            rows += suite.row_12(postgres)
        else:
            rows += getattr(suite, f"row_{number}")()
    return rows


def run_postgres(
    suite: Suite,
    enabled: bool,
    run: Callable[[Postgres], list[Row]],
    skipped: Callable[[str], list[Row]],
) -> list[Row]:
    if not enabled:
        return skipped("skipped (--no-postgres)")
    suite.log("starting a throwaway PostgreSQL server")
    try:
        server = Postgres()
    except Exception as error:
        reason = Postgres.unavailable_reason(error)
        if reason is None:
            raise
        return skipped(f"skipped: PostgreSQL {reason}")
    try:
        return run(server)
    finally:
        server.stop()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # Killed by SIGTERM: unwind normally, so a PostgreSQL server started here is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    command = os.environ.get("BENCH_COMMAND") or shlex.join(["python", "scripts/bench.py", *argv])
    started = time.perf_counter()
    code = code_version(ROOT)  # before the run: the code the workloads import
    load_at_start = os.getloadavg()[0]

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="changeledger-bench-") as workdir:
        suite = Suite(args.sizes, Path(workdir), log, timeout=args.timeout)
        try:
            rows = run_rows(suite, args.only, not args.no_postgres)
        except BenchError as error:
            print(f"scripts/bench: {error}", file=sys.stderr)
            return 1
    runtime = time.perf_counter() - started
    text = render(
        rows,
        command=command,
        runtime=runtime,
        postgres=suite.postgres_version,
        sizes=args.sizes.describe(),
        method=(ROOT / "bench" / "method.md").read_text(),
        code=code,
        load=(load_at_start, os.getloadavg()[0]),
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    log(f"report written to {args.output} ({runtime:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
