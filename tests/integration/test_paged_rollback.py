"""A rollback larger than a page: planned, saved, loaded and applied a page at a time.

Plans keep their compensations on disk (`ledger.spill`) and the planner reads the scope a page
of records at a time, newest first; these tests cross page boundaries (more than 1,000 records)
on a real SQL table, on both stores, and check what a user sees: every row restored field for
field, the order newest first, a saved plan that loads and applies, an edit anywhere refused.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from crm_tables import make_contacts

from adapters.sql import SqlAdapter, SqlCollection
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
from ledger.rollback import check_against_history
from ledger.rollback_requests import read_plan_file
from ledger.runs import Run, Target
from ledger.spill import PAGE

COUNT = PAGE + 200


def rows(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as connection:
        return list(connection.execute(sa.text("SELECT * FROM contacts ORDER BY id")))


@pytest.fixture
def bad_batch(ledger: Ledger, tmp_path: Path) -> tuple[sa.Engine, SqlAdapter, list[tuple]]:
    """COUNT contacts in a SQLite table, then a batch changes every one of them in two
    halves, so that the records' newest actions interleave (the ledger is on both stores)."""
    sql_url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = make_contacts(sql_url, COUNT, stage="lead", score=1)
    adapter = SqlAdapter("crm", sql_url, {"contacts": SqlCollection("contacts")})
    before = rows(engine)
    keys = [f"{i:05d}" for i in range(COUNT)]
    with Run(ledger, "bad") as run:
        for half in (keys[::2], keys[1::2]):
            run.apply(
                Target(adapter, "contacts"),
                [
                    Change(
                        Address("crm", "contacts", key),
                        "update",
                        values={"stage": "junk", "score": 0},
                        expected={"stage": "lead", "score": 1},
                    )
                    for key in half
                ],
            )
    return engine, adapter, before


def test_a_rollback_of_several_pages_restores_every_row_newest_first(
    ledger: Ledger, bad_batch: tuple[sa.Engine, SqlAdapter, list[tuple]]
) -> None:
    engine, adapter, before = bad_batch
    plan = plan_rollback(ledger, RollbackScope(batches=("bad",)), {"crm": adapter})
    positions = [c.position for c in plan.compensations]
    assert len(positions) == COUNT and positions == sorted(positions, reverse=True)
    assert plan.compensations[PAGE].values == {"stage": "lead", "score": 1}

    report = apply_rollback(ledger, plan, {"crm": adapter})

    assert report.counts == {"restored": COUNT} and report.verification == []
    assert rows(engine) == before


def test_a_saved_plan_of_several_pages_loads_checks_and_applies(
    ledger: Ledger, bad_batch: tuple[sa.Engine, SqlAdapter, list[tuple]], tmp_path: Path
) -> None:
    engine, adapter, before = bad_batch
    made = plan_rollback(ledger, RollbackScope(batches=("bad",)), {"crm": adapter})
    saved = tmp_path / "plan.bin"
    with saved.open("wb") as file:
        made.write(file)
    assert len(saved.read_bytes().splitlines()) == 1 + COUNT  # a header, a line each

    loaded = read_plan_file(saved)

    assert (loaded.seal, loaded.id, len(loaded.compensations)) == (made.seal, made.id, COUNT)
    assert loaded == made
    report = apply_rollback(ledger, loaded, {"crm": adapter})  # checked against history
    assert report.counts == {"restored": COUNT}
    assert rows(engine) == before


def test_an_edit_on_a_later_page_is_refused_and_nothing_is_written(
    ledger: Ledger, bad_batch: tuple[sa.Engine, SqlAdapter, list[tuple]], tmp_path: Path
) -> None:
    engine, adapter, _ = bad_batch
    made = plan_rollback(ledger, RollbackScope(batches=("bad",)), {"crm": adapter})
    after_batch = rows(engine)
    saved = tmp_path / "plan.bin"
    saved.write_bytes(made.dumps().replace(b'"stage":"lead"', b'"stage":"boss"', COUNT))
    with pytest.raises(InvalidChange, match="altered after it was saved"):
        read_plan_file(saved)

    twice = [*made.compensations, made.compensations[5]]  # a record of page 1, again
    resealed = RollbackPlan.loads(replace(made, compensations=tuple(twice)).dumps())
    with pytest.raises(InvalidChange, match=r"crm/contacts/\d+: it is planned twice"):
        check_against_history(ledger, resealed)
    with pytest.raises(InvalidChange, match="planned twice"):
        apply_rollback(ledger, resealed, {"crm": adapter})
    assert rows(engine) == after_batch
