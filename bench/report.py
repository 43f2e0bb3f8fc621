"""The report: one table row per workload, the machine and versions, written as Markdown."""

from __future__ import annotations

import math
import os
import platform
import sqlite3
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

COLUMNS = (
    "#",
    "workload",
    "reference (same run)",
    "ledger rate",
    "reference rate",
    "ratio",
    "peak RSS ledger / ref",
    "target",
    "met?",
)
TIMES = "\N{MULTIPLICATION SIGN}"


@dataclass
class Row:
    """One line of the table; ``status`` replaces the figures when the row was not measured."""

    id: str
    workload: str
    reference: str
    target: str
    unit: str = "actions/s"
    ledger_rate: float | None = None
    reference_rate: float | None = None
    ratio: float | None = None
    rss: tuple[float, float] | None = None
    met: bool | None = None
    extra: str = ""
    reference_extra: str = ""
    status: str | None = None
    notes: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        if self.status is not None:
            met = "**no**" if self.met is False else "—"
            figures = ["—", "—", "—"]
            return [self.id, self.workload, self.reference, self.status, *figures, self.target, met]
        ledger = _rate(self.ledger_rate, self.unit) + (f"; {self.extra}" if self.extra else "")
        return [
            self.id,
            self.workload,
            self.reference,
            ledger,
            _rate(self.reference_rate, self.unit)
            + (f"; {self.reference_extra}" if self.reference_extra else ""),
            _ratio(self.ratio),
            "—" if self.rss is None else f"{self.rss[0]:.0f} / {self.rss[1]:.0f} MiB",
            self.target,
            {True: "yes", False: "**no**", None: "—"}[self.met],
        ]


def _rate(value: float | None, unit: str) -> str:
    return "—" if value is None else f"{value:,.0f} {unit}"


def _ratio(value: float | None) -> str:
    """Two decimals; a ratio under 0.01 keeps two significant digits instead of showing 0.00."""
    if value is None:
        return "—"
    decimals = 2 if value >= 0.01 or value <= 0 else min(8, 1 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}{TIMES}"


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    ram = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "RAM": ram,
        "OS": f"{platform.system()} {platform.release()}",
    }


def versions(postgres: str) -> dict[str, str]:
    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return {
        "Python": platform.python_version(),
        "eventsourcing": of("eventsourcing"),
        "SQLite": sqlite3.sqlite_version,
        "PostgreSQL": postgres,
        "orjson": of("orjson"),
        "psycopg": of("psycopg"),
    }


def code_version(root: Path) -> str:
    """The commit measured, and which files of the measured code differed from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "ledger", "adapters", "pyproject.toml"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.split("\n")
    except OSError:
        return "unknown (no git)"
    changed = sorted(line[3:] for line in dirty if line.strip())
    if not head:
        return "unknown (not a git work tree)"
    return f"commit {head}" + (f" + uncommitted {', '.join(changed)}" if changed else "")


def render(
    rows: list[Row],
    *,
    command: str,
    runtime: float,
    postgres: str,
    sizes: str,
    method: str,
    code: str,
    load: tuple[float, float],
) -> str:
    lines = [
        "# Performance",
        "",
        "Written by `scripts/bench` (the benchmark suite of issue 8); do not edit by hand.",
        "Every ratio is the ledger's rate divided by its reference's rate, both measured in the",
        "same run doing the same work; each workload and each reference ran in a fresh process,",
        "whose peak RSS is shown.",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}",
        f"- command: `{command}`",
        f"- runtime of the whole run: {runtime:.0f} s",
        f"- code measured: {code}",
        f"- load average (1 min) at start / end: {load[0]:.2f} / {load[1]:.2f} "
        "(anything above 0 means other processes shared the CPUs)",
        f"- sizes: {sizes}",
        "- machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions(postgres).items()),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    notes = [f"- **{row.id}**: {note}" for row in rows for note in row.notes]
    if notes:
        lines += ["", "## Observations from this run", "", *notes]
    lines += ["", "## How each figure is measured", "", method.strip(), ""]
    return "\n".join(lines)
