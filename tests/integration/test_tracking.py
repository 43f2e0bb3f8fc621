"""`ledger track`: a baseline of a whole collection, after which every as-of view is whole."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from crm_tables import make_contacts

from adapters.sql import SqlAdapter, SqlCollection
from ledger import Address, Change, Point, Run, Target, open_ledger
from ledger.evidence import verify
from ledger.tracking import track

LEDGER = [sys.executable, "-m", "ledger"]


def test_a_tracked_collection_is_whole_as_of_any_later_point(tmp_path: Path) -> None:
    crm = tmp_path / "crm.db"
    make_contacts(f"sqlite:///{crm}", 50, stage="lead", owner="ann").dispose()
    ledger = open_ledger(str(tmp_path / "ledger.db"))
    adapter = SqlAdapter("crm", f"sqlite:///{crm}", {"contacts": SqlCollection("contacts")})
    report = track(ledger, adapter, "contacts", batch="baseline")
    assert (report.tracked, report.already_whole, report.drifted) == (50, 0, 0)
    ledger.checkpoint("before-sync")
    Run(ledger, "sync").apply(
        Target(adapter, "contacts"),
        [
            Change(Address("crm", "contacts", f"{i:05d}"), "update", values={"stage": "mql"})
            for i in range(10)
        ],
    )
    before = list(ledger.collection("crm", "contacts", Point.parse("before-sync")))
    assert len(before) == 50
    assert all(state.fields == {"stage": "lead", "owner": "ann"} for state in before)
    now = {s.entity: s.fields for s in ledger.collection("crm", "contacts")}
    assert now["crm/contacts/00003"] == {"stage": "mql", "owner": "ann"}
    # Tracking again finds everything whole and records nothing.
    again = track(ledger, adapter, "contacts", batch="baseline-2")
    assert (again.tracked, again.already_whole, again.drifted) == (0, 50, 0)
    # A track is nothing a rollback undoes: rolling back the baseline batch plans nothing.
    assert ledger.index.actions_matching(batches=["baseline"]) == []


def test_tracking_leaves_drift_alone_and_counts_it(tmp_path: Path) -> None:
    crm = tmp_path / "crm.db"
    make_contacts(f"sqlite:///{crm}", 5, stage="lead").dispose()
    ledger = open_ledger(str(tmp_path / "ledger.db"))
    adapter = SqlAdapter("crm", f"sqlite:///{crm}", {"contacts": SqlCollection("contacts")})
    track(ledger, adapter, "contacts", batch="baseline")
    with sqlite3.connect(crm) as db:
        db.execute("UPDATE contacts SET stage = 'customer' WHERE id = '00001'")
        db.execute("DELETE FROM contacts WHERE id = '00002'")
        db.execute("INSERT INTO contacts VALUES ('00009', 'new')")
    report = track(ledger, adapter, "contacts", batch="baseline-2")
    assert (report.tracked, report.already_whole, report.drifted) == (1, 3, 2)
    assert report.drift_samples == ("crm/contacts/00001", "crm/contacts/00002")
    assert ledger.state(Address("crm", "contacts", "00001")).fields == {"stage": "lead"}
    assert ledger.state(Address("crm", "contacts", "00009")).fields == {"stage": "new"}


def test_the_track_command_reports_and_exits_2_on_drift(
    workspace: tuple[Path, Path, dict[str, str]],
) -> None:
    _, crm, env = workspace
    make_contacts(f"sqlite:///{crm}", 3, stage="lead").dispose()
    result = subprocess.run(
        [*LEDGER, "track", "crm/contacts", "--batch", "baseline", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tracked"] == 3
    with sqlite3.connect(crm) as db:
        db.execute("UPDATE contacts SET stage = 'x' WHERE id = '00000'")
    drifted = subprocess.run(
        [*LEDGER, "track", "crm/contacts"], env=env, capture_output=True, text=True
    )
    assert drifted.returncode == 2
    assert "0 tracked, 2 already known whole, 1 drifted" in drifted.stdout
    assert "drift: crm/contacts/00000" in drifted.stdout


KILLED_TRACK = """
import os, signal, sys
from adapters.sql import SqlAdapter, SqlCollection
from ledger import open_ledger, tracking
from ledger.recording import _Session

tracking.COMMIT_EVERY = 10_000  # two chunks of 5,000 per commit
saves = 0
save = _Session.save

def counted(self, *args, **kwargs):
    global saves
    result = save(self, *args, **kwargs)
    saves += 1
    if saves == 3:  # the first chunk after the first commit, saved and not yet committed
        os.kill(os.getpid(), signal.SIGKILL)
    return result

_Session.save = counted
ledger = open_ledger(sys.argv[1])
adapter = SqlAdapter("crm", sys.argv[2], {"contacts": SqlCollection("contacts")})
tracking.track(ledger, adapter, "contacts", batch="baseline")
"""


def test_a_killed_track_keeps_what_it_committed_verifies_and_resumes(tmp_path: Path) -> None:
    crm = tmp_path / "crm.db"
    make_contacts(f"sqlite:///{crm}", 25_000, stage="lead", owner="ann").dispose()
    ledger_db = tmp_path / "ledger.db"
    open_ledger(str(ledger_db)).close()
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_TRACK, str(ledger_db), f"sqlite:///{crm}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    ledger = open_ledger(str(ledger_db), create=False)
    report = verify(ledger)
    assert report.ok, report.first_break
    assert len(list(ledger.collection("crm", "contacts"))) == 10_000  # the committed rows only
    adapter = SqlAdapter("crm", f"sqlite:///{crm}", {"contacts": SqlCollection("contacts")})
    resumed = track(ledger, adapter, "contacts", batch="baseline")
    assert (resumed.tracked, resumed.already_whole, resumed.drifted) == (15_000, 10_000, 0)
    states = list(ledger.collection("crm", "contacts"))
    assert len(states) == 25_000
    assert all(state.fields == {"stage": "lead", "owner": "ann"} for state in states)
    assert verify(ledger).ok
