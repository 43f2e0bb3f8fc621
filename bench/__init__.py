"""The benchmark suite of issue 8 (see docs/performance.md and scripts/bench).

Each workload and each reference runs in a fresh subprocess (``python -m bench.child``),
so the peak RSS it reports is its own. The parent (``bench.suite``) prepares databases,
runs a workload and its reference in the same run, and writes the report (``bench.report``).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
