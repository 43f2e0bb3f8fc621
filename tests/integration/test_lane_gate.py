"""The gate every write passes (`Ledger.admit`): a paused workflow's record, import, run and
replay are refused before anything is written, ledger and target unchanged; the rollback of its
batch goes through (it is the repair); a pause made by another process stops a run at its next
chunk, what it wrote before staying recorded and settled."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from crm_tables import make_contacts

from adapters.sql import SqlAdapter, SqlCollection
from ledger import (
    Address,
    CanaryLimit,
    Change,
    LanePaused,
    RollbackScope,
    Run,
    Target,
    allow_canary,
    apply_rollback,
    open_ledger,
    pause_lane,
    plan_rollback,
)
from ledger.change_files import BatchOptions, ChangeFile
from ledger.imports import PreparedImport
from ledger.lane_control import canary_run

WORKFLOW = "lead-sync"


@pytest.fixture
def crm(tmp_path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = make_contacts(url, 6, stage="lead", owner="ann")
    adapter = SqlAdapter("crm", url, {"contacts": SqlCollection("contacts")})
    ledger = open_ledger(str(tmp_path / "ledger.db"))
    yield ledger, adapter, engine
    ledger.close()
    adapter.close()


def owners(engine):
    with engine.connect() as connection:
        return [r[0] for r in connection.execute(sa.text("SELECT owner FROM contacts ORDER BY id"))]


def update(i, owner="dara"):
    return Change(Address("crm", "contacts", f"{i:05d}"), "update", values={"owner": owner})


def create(i):
    return Change(Address("crm", "contacts", f"{i:05d}"), "create", values={"owner": "x"})


def test_recording_a_paused_workflows_change_is_refused_and_writes_nothing(ledger):
    pause_lane(ledger, WORKFLOW, "owners look wrong", "alice")
    end = ledger.recorder.max_notification_id()
    with pytest.raises(LanePaused, match=r"'lead-sync' is paused \(by alice, at .*owners look"):
        ledger.record(create(1), workflow=WORKFLOW)
    with pytest.raises(LanePaused):
        ledger.record_all([create(2), create(3).with_defaults(workflow=WORKFLOW)], batch="b")
    assert ledger.recorder.max_notification_id() == end
    ledger.record(create(1), workflow="other")  # other workflows go on


def test_importing_a_paused_workflows_file_is_refused(ledger, tmp_path):
    path = tmp_path / "changes.jsonl"
    path.write_text('{"entity": "crm/contacts/1", "op": "create", "set": {"owner": "x"}}\n')
    pause_lane(ledger, WORKFLOW, "stop", "alice")
    end = ledger.recorder.max_notification_id()
    prepared = PreparedImport.of(
        ChangeFile.read(path), BatchOptions(None, WORKFLOW, None, None, None)
    )
    with pytest.raises(LanePaused):
        prepared.record(ledger)
    assert ledger.recorder.max_notification_id() == end


def test_a_run_of_a_paused_workflow_writes_nothing_to_the_target_or_the_ledger(crm):
    ledger, adapter, engine = crm
    pause_lane(ledger, WORKFLOW, "stop", "alice")
    end = ledger.recorder.max_notification_id()
    with pytest.raises(LanePaused), Run(ledger, "run-1", workflow=WORKFLOW) as run:
        run.apply(Target(adapter, "contacts"), [update(i) for i in range(6)])
    assert owners(engine) == ["ann"] * 6
    assert ledger.recorder.max_notification_id() == end
    assert ledger.index.pending() == []


def test_the_rollback_of_a_paused_workflows_batch_goes_through_its_replay_does_not(crm):
    ledger, adapter, engine = crm
    with Run(ledger, "run-1", workflow=WORKFLOW) as run:
        run.apply(Target(adapter, "contacts"), [update(i) for i in range(6)])
    pause_lane(ledger, WORKFLOW, "owners look wrong", "alice")
    scope = RollbackScope(batches=("run-1",))
    report = apply_rollback(
        ledger, plan_rollback(ledger, scope, {"crm": adapter}), {"crm": adapter}
    )
    assert {r.outcome for r in report.results} == {"restored"}
    assert owners(engine) == ["ann"] * 6
    replay = plan_rollback(ledger, scope, {"crm": adapter}, direction="redo")
    with pytest.raises(LanePaused, match="'lead-sync' is paused"):
        apply_rollback(ledger, replay, {"crm": adapter})
    assert owners(engine) == ["ann"] * 6


def test_a_paused_lanes_canary_batch_is_admitted_up_to_its_limit(crm):
    ledger, adapter, engine = crm
    pause_lane(ledger, WORKFLOW, "stop", "alice")
    allow_canary(ledger, WORKFLOW, "bob", "canary-1", 2)
    with pytest.raises(CanaryLimit), Run(ledger, "canary-1", workflow=WORKFLOW) as run:
        run.apply(Target(adapter, "contacts"), [update(i) for i in range(6)], chunk_size=4)
    assert owners(engine) == ["dara", "dara"] + ["ann"] * 4
    proof = canary_run(ledger, WORKFLOW)  # what `ledger enable` reads
    assert (proof.batch, proof.actions, proof.completed, proof.tripped) == (
        "canary-1",
        2,
        True,
        False,
    )
    with pytest.raises(LanePaused):  # any other batch stays refused
        Run(ledger, "run-2", workflow=WORKFLOW).apply(Target(adapter, "contacts"), [update(5)])
    with pytest.raises(CanaryLimit):  # recorded changes may not take the canary past its limit
        ledger.record(create(9), workflow=WORKFLOW, batch="canary-1")


def test_a_batch_recorded_in_chunks_is_gated_whole(ledger, monkeypatch):
    """`record_stream`/`record_all` check the gate chunk by chunk inside one transaction: a
    paused workflow first met in a later chunk, or a canary that only the chunks together
    take past its limit, still refuses the whole batch, nothing of it written."""
    monkeypatch.setattr("ledger.recording.CHUNK", 3)
    pause_lane(ledger, WORKFLOW, "stop", "alice")
    allow_canary(ledger, WORKFLOW, "bob", "canary-1", 5)
    ledger.record(create(100), workflow=WORKFLOW, batch="canary-1")
    end = ledger.recorder.max_notification_id()
    changes = [create(i) for i in range(7)]
    with pytest.raises(LanePaused):
        ledger.record_stream([*changes, create(7).with_defaults(workflow=WORKFLOW)], batch="b")
    with pytest.raises(CanaryLimit, match="limited to 5 actions"):
        ledger.record_all(changes[:5], workflow=WORKFLOW, batch="canary-1")
    assert ledger.recorder.max_notification_id() == end
    ledger.record_all(changes[:4], workflow=WORKFLOW, batch="canary-1")  # 1 + 4: at the limit
    assert ledger.index.batch_count("canary-1") == 5


# A second process pauses the lane while this one is between two chunks of a run: the run's
# changes come from a generator that, once the first chunk is written and settled, signals
# and waits for the test to say go (waiting on a file, not on the clock).
RUN_BETWEEN_CHUNKS = """
import json, sys, time
from pathlib import Path
from adapters.sql import SqlAdapter, SqlCollection
from ledger import Address, Change, LanePaused, Run, Target, open_ledger

db, url, signals = sys.argv[1], sys.argv[2], Path(sys.argv[3])
ledger = open_ledger(db)
adapter = SqlAdapter("crm", url, {"contacts": SqlCollection("contacts")})

def changes():
    for i in range(6):
        if i == 3:  # chunk (0, 1) is written and settled; chunk (2, 3) is being gathered
            (signals / "between-chunks").touch()
            while not (signals / "go").exists():
                time.sleep(0.01)
        yield Change(Address("crm", "contacts", f"{i:05d}"), "update", values={"owner": "dara"})

run = Run(ledger, "run-1", workflow="lead-sync")
try:
    with run:
        run.apply(Target(adapter, "contacts"), changes(), chunk_size=2)
    print(json.dumps({"stopped": None}))
except LanePaused as error:
    print(json.dumps({"stopped": str(error), "counts": dict(run.counts)}))
"""


def test_a_pause_by_a_second_process_stops_a_running_run_at_its_next_chunk(tmp_path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = make_contacts(url, 6, stage="lead", owner="ann")
    db = str(tmp_path / "ledger.db")
    open_ledger(db).close()
    signals = tmp_path / "signals"
    signals.mkdir()
    running = subprocess.Popen(
        [sys.executable, "-c", RUN_BETWEEN_CHUNKS, db, url, str(signals)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(signals / "between-chunks", running)
        paused = subprocess.run(
            [sys.executable, "-m", "ledger", "pause", "lead-sync", "--reason", "owners wrong"],
            env={"LEDGER_DB": db, "LEDGER_ACTOR": "ops", "PATH": ""},
            capture_output=True,
            text=True,
        )
        assert paused.returncode == 0, paused.stderr
        (signals / "go").touch()
        output, _ = running.communicate(timeout=60)
    finally:
        running.kill()
    result = json.loads(output)
    assert (
        "'lead-sync' is paused (by ops" in result["stopped"] and "owners wrong" in result["stopped"]
    )
    assert result["counts"] == {"applied": 2}
    assert owners(engine) == ["dara", "dara"] + ["ann"] * 4  # the first chunk, nothing more
    ledger = open_ledger(db)
    assert ledger.batch_view("run-1").actions == 2
    assert ledger.index.pending() == []  # settled, not left unconfirmed
    ledger.close()


def _wait_for(path: Path, process: subprocess.Popen) -> None:
    """Until the run signals (or ends early, which fails the test)."""
    import time

    while not path.exists():
        assert process.poll() is None, "the run ended before reaching its second chunk"
        time.sleep(0.01)
