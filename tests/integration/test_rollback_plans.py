"""A saved plan is applied only as it was made: the file is sealed (an edit is refused when it is
loaded), and every compensation is checked against the ledger's own history when it is applied
(an edit whose seal was recomputed is refused too). A refused plan changes nothing: not the
target, not the ledger."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from crm_tables import make_contacts

from adapters.memory import MemoryAdapter
from ledger import (
    Address,
    Change,
    Ledger,
    RollbackPlan,
    RollbackScope,
    apply_rollback,
    plan_rollback,
)
from ledger.errors import InvalidChange
from ledger.ports import Write
from ledger.rollback import Compensation, Contract, check_against_history
from ledger.runs import Run, Target

LEDGER = [sys.executable, "-m", "ledger"]
SEED = {
    "1": {"stage": "lead", "owner": "ann"},
    "2": {"stage": "mql", "owner": "bo"},
    "3": {"stage": "lead", "owner": "cy"},
}


@pytest.fixture
def crm() -> MemoryAdapter:
    return MemoryAdapter("crm", {"contacts": {k: dict(v) for k, v in SEED.items()}})


def contact(key: str) -> Address:
    return Address("crm", "contacts", key)


def batch(ledger: Ledger, crm: MemoryAdapter, name: str, keys: tuple[str, ...]) -> None:
    with Run(ledger, name) as run:
        run.apply(
            Target(crm, "contacts"),
            [Change(contact(k), "update", values={"stage": "sql", "owner": "dara"}) for k in keys],
        )


def edited(rollback: RollbackPlan, index: int, **fields: Any) -> RollbackPlan:
    compensations = list(rollback.compensations)
    compensations[index] = replace(compensations[index], **fields)
    return replace(rollback, compensations=tuple(compensations))


def by_entity(rollback: RollbackPlan, entity: str) -> int:
    return next(i for i, c in enumerate(rollback.compensations) if c.entity == entity)


def forgeries(rollback: RollbackPlan) -> dict[str, RollbackPlan]:
    """Hand edits a reviewer could make to the plan of batch b1 (records 1 and 2), each with
    a seal recomputed by `dumps`: all of them must be refused by the history check."""
    first = by_entity(rollback, "crm/contacts/1")
    restore = rollback.compensations[first]
    outside = replace(restore, entity="crm/contacts/3")
    return {
        "a record outside the batch": replace(
            rollback, compensations=(*rollback.compensations, outside)
        ),
        "a value history does not give": edited(
            rollback, first, values={**restore.values, "stage": "customer"}
        ),
        "a field the batch did not change": edited(
            rollback, first, values={**restore.values, "email": "x@example.com"}
        ),
        "an expected value matching an outside edit": edited(
            rollback,
            first,
            values={**restore.values, "owner": "ann"},
            expected={**restore.expected, "owner": "zed"},
        ),
        "a compare-and-set dropped": edited(rollback, first, expected={}),
        "links to other actions": edited(rollback, first, compensates=("sha256:other",)),
        "a record turned into a delete": edited(
            rollback, first, operation="delete", values={}, unset=()
        ),
        "a record planned twice": replace(
            rollback, compensations=(*rollback.compensations, restore)
        ),
    }


@pytest.mark.parametrize(
    "edit",
    [
        "a record outside the batch",
        "a value history does not give",
        "a field the batch did not change",
        "an expected value matching an outside edit",
        "a compare-and-set dropped",
        "links to other actions",
        "a record turned into a delete",
        "a record planned twice",
    ],
)
def test_a_plan_edited_and_resealed_is_refused_and_changes_nothing(
    ledger: Ledger, crm: MemoryAdapter, edit: str
) -> None:
    batch(ledger, crm, "b1", ("1", "2"))
    crm.write("contacts", [Write("1", "update", {"owner": "zed"}, expected={})])  # outside edit
    made = plan_rollback(ledger, RollbackScope(batches=("b1",)), {"crm": crm}, policy="fields")
    forged = RollbackPlan.loads(forgeries(made)[edit].dumps())  # the seal holds
    events = ledger.recorder.max_notification_id()
    target = dict(crm.scan("contacts"))

    with pytest.raises(InvalidChange, match="does not match the ledger's history") as refused:
        apply_rollback(ledger, forged, {"crm": crm})

    assert "crm/contacts/" in str(refused.value) and "nothing was applied" in str(refused.value)
    assert dict(crm.scan("contacts")) == target
    assert ledger.recorder.max_notification_id() == events


def test_a_conflict_moved_into_the_compensations_is_refused(
    ledger: Ledger, crm: MemoryAdapter
) -> None:
    """Record 2 was changed by a later batch: a conflict under `skip`. An edit that restores it
    anyway (with values history does give) is refused: the plan's policy keeps it."""
    batch(ledger, crm, "b1", ("1", "2"))
    with Run(ledger, "later") as run:
        run.update(Target(crm, "contacts"), "2", {"owner": "eve"})
    made = plan_rollback(ledger, RollbackScope(batches=("b1",)), {"crm": crm})
    assert [c.entity for c in made.conflicts] == ["crm/contacts/2"]
    (synced,) = [a for a in ledger.history(contact("2")) if a.batch == "b1"]
    restore_2 = Compensation(
        "crm/contacts/2",
        "update",
        {"stage": "mql", "owner": "bo"},
        (),
        {"stage": "sql", "owner": "eve"},
        (synced.fingerprint,),
        synced.position or 0,
    )
    forged = replace(made, compensations=(*made.compensations, restore_2), conflicts=())

    with pytest.raises(InvalidChange, match=r"crm/contacts/2: others changed it since .*conflict"):
        apply_rollback(ledger, forged, {"crm": crm})
    assert crm.read("contacts", ["2"])["2"] == {"stage": "sql", "owner": "eve"}


def test_a_protected_field_added_by_hand_is_refused_under_the_contract(
    ledger: Ledger, crm: MemoryAdapter
) -> None:
    contracts = {("crm", "contacts"): Contract(protected=("owner",))}
    batch(ledger, crm, "b1", ("1",))
    made = plan_rollback(ledger, RollbackScope(batches=("b1",)), {"crm": crm}, contracts=contracts)
    assert made.compensations[0].values == {"stage": "lead"}
    forged = edited(
        made,
        0,
        values={"stage": "lead", "owner": "ann"},
        expected={"stage": "sql", "owner": "dara"},
    )

    with pytest.raises(InvalidChange, match="field 'owner' is not one the rollback may restore"):
        apply_rollback(ledger, forged, {"crm": crm}, contracts=contracts)
    assert crm.read("contacts", ["1"])["1"] == {"stage": "sql", "owner": "dara"}


def test_every_plan_the_planner_makes_passes_the_check(ledger: Ledger, crm: MemoryAdapter) -> None:
    """Each policy, with a conflict by drift, one by a later action, a create and a delete."""
    batch(ledger, crm, "b1", ("1", "2", "3"))
    with Run(ledger, "b1-more") as run:
        run.create(Target(crm, "contacts"), "9", {"stage": "new"})
        run.delete(Target(crm, "contacts"), "3")
    crm.write("contacts", [Write("1", "update", {"owner": "zed"}, expected={})])
    with Run(ledger, "later") as run:
        run.update(Target(crm, "contacts"), "2", {"owner": "eve"})
    for policy in ("skip", "fields", "force", "abort"):
        made = plan_rollback(
            ledger, RollbackScope(batches=("b1", "b1-more")), {"crm": crm}, policy=policy
        )
        loaded = RollbackPlan.loads(made.dumps())
        assert loaded == made  # sealed and loaded back
        check_against_history(ledger, loaded)  # another object than the one made: read again


# Through the CLI, with a real SQLite CRM ---------------------------------------------------


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LEDGER, *args], env=env, capture_output=True, text=True)


@pytest.fixture
def planned(workspace: tuple[Path, Path, dict[str, str]]) -> tuple[Path, Path, dict[str, str]]:
    """A batch b1 changed contacts 00000 and 00001 of three; its plan saved as plan.bin."""
    tmp_path, crm, env = workspace
    make_contacts(f"sqlite:///{crm}", 3, stage="lead", owner="ann").dispose()
    lines = tmp_path / "b1.jsonl"
    lines.write_text(
        "".join(
            json.dumps({"entity": f"crm/contacts/0000{i}", "op": "update", "set": {"stage": "sql"}})
            + "\n"
            for i in range(2)
        )
    )
    assert run_cli(env, "apply", str(lines), "--system", "crm", "--batch", "b1").returncode == 0
    made = run_cli(env, "rollback", "plan", "--batch", "b1", "--out", str(tmp_path / "plan.bin"))
    assert made.returncode == 0, made.stderr
    return tmp_path, crm, env


def stages(crm: Path) -> list[tuple[str, str]]:
    return sqlite3.connect(crm).execute("SELECT id, stage FROM contacts ORDER BY id").fetchall()


def test_a_hand_edited_plan_file_is_refused_when_loaded(planned: Any) -> None:
    """The reviewer points the plan at a record outside the batch, in the file itself."""
    tmp_path, crm, env = planned
    saved = tmp_path / "plan.bin"
    header, *lines = saved.read_bytes().splitlines()  # then one line per compensation
    compensation = json.loads(lines[0])
    compensation["entity"] = "crm/contacts/00002"
    compensation["values"] = {"stage": "customer"}
    saved.write_bytes(b"\n".join([header, json.dumps(compensation).encode(), *lines[1:]]))
    before = stages(crm)

    applied = run_cli(env, "rollback", "apply", "--plan", str(saved))

    assert applied.returncode == 1
    assert f"{saved}: the plan was altered after it was saved" in applied.stderr
    assert "Traceback" not in applied.stderr
    assert stages(crm) == before
    assert json.loads(run_cli(env, "rollback", "status", "--json").stdout) == []


def test_a_resealed_plan_file_writing_outside_the_batch_is_refused(planned: Any) -> None:
    tmp_path, crm, env = planned
    saved = tmp_path / "plan.bin"
    made = RollbackPlan.loads(saved.read_bytes())
    outside = replace(made.compensations[0], entity="crm/contacts/00002", expected={})
    saved.write_bytes(replace(made, compensations=(*made.compensations, outside)).dumps())
    before = stages(crm)

    applied = run_cli(env, "rollback", "apply", "--plan", str(saved))

    assert applied.returncode == 1
    assert "crm/contacts/00002: it has no action in the scope (batch b1)" in applied.stderr
    assert "Traceback" not in applied.stderr
    assert stages(crm) == before


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b'{"id": "x"}', b"[1, 2]", b'{"format": "changeledger/rollback-plan/3"}'],
)
def test_a_file_that_is_not_a_plan_is_a_one_line_error(workspace: Any, content: bytes) -> None:
    tmp_path, _, env = workspace
    saved = tmp_path / "other.bin"
    saved.write_bytes(content)

    applied = run_cli(env, "rollback", "apply", "--plan", str(saved))

    assert applied.returncode == 1
    assert applied.stderr.strip().splitlines()[-1] == (
        f"Error: {saved}: not a plan saved by `ledger rollback plan --out`"
    )


def test_the_plan_just_made_is_not_read_against_history_again_but_any_other_is(
    ledger: Ledger, crm: MemoryAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Applying the plan `plan_rollback` returned, as returned, reuses planning's reading of
    the histories; a copy, a loaded file, or other contracts are read against history again."""
    import ledger.rollback.checks as checks

    read: list[int] = []
    original = checks.read_histories

    def counted(*args: Any) -> Any:
        read.append(1)
        return original(*args)

    monkeypatch.setattr(checks, "read_histories", counted)
    batch(ledger, crm, "b1", ("1", "2"))
    made = plan_rollback(ledger, RollbackScope(batches=("b1",)), {"crm": crm})
    assert check_against_history(ledger, made) == ()
    assert read == []
    assert check_against_history(ledger, RollbackPlan.loads(made.dumps())) == ()
    assert check_against_history(ledger, replace(made)) == ()
    assert len(read) == 2
    manual = {("crm", "contacts"): Contract(repair="notify")}
    with pytest.raises(InvalidChange, match="manual repair"):
        apply_rollback(ledger, made, {"crm": crm}, contracts=manual)
    assert crm.read("contacts", ["1", "2"]) == {
        "1": {"stage": "sql", "owner": "dara"},
        "2": {"stage": "sql", "owner": "dara"},
    }
    report = apply_rollback(ledger, made, {"crm": crm})
    assert report.counts == {"restored": 2}
    assert len(read) == 3  # the refused apply read history; this one did not


def test_planning_and_verifying_read_the_targets_a_page_at_a_time(
    ledger: Ledger, crm: MemoryAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory stays that of a page: neither planning nor the verification after applying reads
    every record of the rollback from its target at once."""
    import ledger.rollback.planning as planning
    import ledger.rollback.verification as verification

    monkeypatch.setattr(planning, "HISTORY_PAGE", 2)
    monkeypatch.setattr(verification, "PAGE", 2)
    batch(ledger, crm, "b1", ("1", "2", "3"))
    asked: list[int] = []
    read = crm.read

    def counted(collection: str, keys: Any) -> Any:
        asked.append(len(keys))
        return read(collection, keys)

    monkeypatch.setattr(crm, "read", counted)
    made = plan_rollback(ledger, RollbackScope(batches=("b1",)), {"crm": crm})
    assert asked == [2, 1]
    report = apply_rollback(ledger, made, {"crm": crm})
    assert report.counts == {"restored": 3} and report.mismatches == []
    assert asked[2:] == [3, 2, 1]  # the run's chunk (compare-and-set), then the verification
    assert crm.read("contacts", ["1", "2", "3"]) == SEED
