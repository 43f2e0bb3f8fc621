"""The benchmark suite runs end to end at tiny sizes and reports every row (no timing asserted)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench.py"
MEASURED = (
    "1a",
    "1b",
    "2",
    "3",
    "4a",
    "4b",
    "5a",
    "5b",
    "6 (100)",
    "6 (300)",
    "6b",
    "7a",
    "7b",
    "9a",
    "9b",
    "10",
)
RATE = re.compile(r"^[\d,]+ (actions|states|records|rows|events)/s\b")
RATIO = re.compile(r"^\d+\.\d{2,8}\N{MULTIPLICATION SIGN}$")
RSS = re.compile(r"^\d+ / \d+ MiB$")


def _table(report: str) -> dict[str, list[str]]:
    rows = {}
    for line in report.splitlines():
        if line.startswith("| ") and not line.startswith("| # "):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            assert len(cells) == 9, line
            rows[cells[0]] = cells
    return rows


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> str:
    output = tmp_path_factory.mktemp("bench") / "performance.md"
    process = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--no-postgres", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return output.read_text()


def test_every_row_is_reported(quick_report: str) -> None:
    rows = _table(quick_report)
    assert list(rows) == [*MEASURED[:-3], "8a", "8b", "8c", *MEASURED[-3:], "11", "12"]
    for row_id in ("8a", "8b", "8c", "11", "12"):
        assert rows[row_id][3] == "skipped (--no-postgres)"


def test_measured_rows_have_numbers_that_parse(quick_report: str) -> None:
    rows = _table(quick_report)
    for row_id in MEASURED:
        _, _, _, ledger, reference, ratio, rss, target, met = rows[row_id]
        assert RATE.match(ledger), (row_id, ledger)
        assert RATE.match(reference), (row_id, reference)
        assert RATIO.match(ratio), (row_id, ratio)
        assert RSS.match(rss), (row_id, rss)
        assert float(ratio.rstrip("\N{MULTIPLICATION SIGN}")) > 0
        assert target and met in ("yes", "**no**")
    for row_id in ("4a", "4b"):
        assert re.search(r"median \d+\.\d\d ms", rows[row_id][3])
    # the largest size says how peak RSS grew from the smallest
    for row_id in ("1b", "5b", "6 (300)", "9b"):
        assert re.search(r"; RSS [+-]\d+ MiB vs [\d,]+$", rows[row_id][3])


def test_the_baseline_row_compares_the_same_rows_and_says_whether_memory_is_flat(
    quick_report: str,
) -> None:
    rows = _table(quick_report)
    assert rows["9a"][1].startswith("baseline of a 100-row SQLite table")
    assert rows["9b"][1].startswith("baseline of a 300-row SQLite table")
    assert rows["9b"][7] == "≥ 0.3\N{MULTIPLICATION SIGN} the reference, memory flat"
    assert (
        "- **9a**: the ledger committed every 50,000 records (chunks of 5,000 in one held write "
        "transaction) and wrote 101 event rows" in quick_report
    )
    assert re.search(
        r"- \*\*9b\*\*: ledger peak RSS \d+ MiB at 100 rows and \d+ MiB at 300: (NOT )?flat",
        quick_report,
    )


def test_report_names_machine_versions_and_command(quick_report: str) -> None:
    for label in ("- date: ", "- command: `", "- machine: CPU ", "- versions: Python "):
        assert label in quick_report
    for name in ("eventsourcing", "SQLite", "PostgreSQL"):
        assert name in quick_report.split("- versions: ")[1].splitlines()[0]
    assert "--quick --no-postgres" in quick_report


@pytest.mark.postgres
@pytest.mark.slow
def test_the_http_row_serves_the_ledger_and_its_floor(tmp_path: Path) -> None:
    output = tmp_path / "performance.md"
    process = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "12", "--sizes", "http=100", "--output", output],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    report = output.read_text()
    if "| 12 | " in report and "skipped: PostgreSQL" in report:
        pytest.skip("no PostgreSQL server binaries")
    _, workload, _, ledger, floor, ratio, rss, _, met = _table(report)["12"]
    assert workload.startswith("100 `POST /v1/actions`")
    for figures in (ledger, floor):
        assert re.match(r"^[\d,]+ requests/s; p50 \d+ ms, p99 \d+ ms$", figures), figures
    assert RATIO.match(ratio) and RSS.match(rss) and met == "yes"
    assert "- **12**: 100 requests, 85 distinct keys: each executed once;" in report


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_never_writes_the_committed_report() -> None:
    script = _script()
    args = script.parse_args(["--quick"])
    try:
        assert args.output != script.DEFAULT_OUTPUT
        assert max(args.sizes.batch) < 1000
    finally:
        args.output.unlink(missing_ok=True)
    assert script.parse_args([]).output == script.DEFAULT_OUTPUT


def test_sizes_and_rows_are_parameters() -> None:
    script = _script()
    args = script.parse_args(
        ["--sizes", "batch=50,collection=10:20,pg_batch=7,track=30:10", "--only", "1,4,9"]
    )
    sizes = args.sizes
    assert (sizes.batch, sizes.collection, sizes.pg_batch) == ((50,), (10, 20), (7,))
    assert sizes.track == (10, 30)
    assert args.only == {"1", "4", "9"}
    bad_args = (["--sizes", "nope=1"], ["--sizes", "batch=0"], ["--sizes", "track=0:5"])
    for bad in (*bad_args, ["--only", "13"]):
        with pytest.raises(SystemExit):
            script.parse_args(bad)
