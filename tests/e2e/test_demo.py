"""The README's main command keeps working: the demo's steps (golden path 1-8) run end to end."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_demo_runs_the_golden_path_to_the_end(tmp_path):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DEMO_OUT": str(tmp_path / "demo"),
    }
    env.pop("LEDGER_DB", None)
    env.pop("LEDGER_CONFIG", None)
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo_steps.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Golden path 6: apply it" in out
    assert "compensations were already applied; nothing written" in out
    assert "Golden path 7: reconcile finds exactly the outside edits" in out
    assert "Golden path 8: a stop trigger pauses lead-sync mid-run" in out
    assert "paused by stop trigger field_order" in out
    assert "workflow 'lead-sync' stays paused" in done.stderr
    assert "workflow 'lead-sync' enabled by ops" in out
    assert "history intact" in out
    assert "history broken (modified: position 101" in done.stderr
    assert out.rstrip().endswith(f"demo finished: ledgers in {tmp_path / 'demo'}/")
