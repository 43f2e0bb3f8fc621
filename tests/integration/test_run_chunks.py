"""`Run.apply_chunks`: a run streams its changes, each chunk written, recorded and answered
before the next change is read, so a large batch runs in memory that does not grow with it."""

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from adapters.sql import SqlAdapter, SqlCollection
from ledger import Address, Change, Run, Target, open_ledger
from ledger.errors import NotFound


@pytest.fixture
def crm(tmp_path):
    """A SQLite CRM of 10 contacts at stage 'lead', and a ledger."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE contacts (id TEXT PRIMARY KEY, stage TEXT)")
        for i in range(10):
            connection.exec_driver_sql(f"INSERT INTO contacts VALUES ('{i:05d}', 'lead')")
    adapter = SqlAdapter("crm", url, {"contacts": SqlCollection("contacts")})
    ledger = open_ledger(str(tmp_path / "ledger.db"))
    yield ledger, adapter, engine
    ledger.close()
    adapter.close()
    engine.dispose()


def stages(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as connection:
        return dict(connection.execute(sa.text("SELECT id, stage FROM contacts")).all())


def test_each_chunk_is_written_recorded_and_answered_before_the_next_is_read(crm):
    ledger, adapter, engine = crm
    read: list[int] = []

    def changes() -> Iterator[Change]:
        for i in range(10):
            read.append(i)
            yield Change(Address("crm", "contacts", f"{i:05d}"), "update", values={"stage": "mql"})

    with Run(ledger, "b1") as run:
        chunks = run.apply_chunks(Target(adapter, "contacts"), changes(), chunk_size=4)
        first = next(chunks)
        assert [o.entity for o in first] == [f"crm/contacts/{i:05d}" for i in range(4)]
        assert {o.status for o in first} == {"applied"}
        assert len(read) == 5  # the fifth change ended the first chunk; nothing after it
        assert sum(stage == "mql" for stage in stages(engine).values()) == 4
        assert ledger.history(Address.parse("crm/contacts/00003"))[-1].after == {"stage": "mql"}
        with pytest.raises(NotFound):
            ledger.history(Address.parse("crm/contacts/00004"))
        rest = [outcome for chunk in chunks for outcome in chunk]
    assert [o.status for o in rest] == ["applied"] * 6
    assert set(stages(engine).values()) == {"mql"}
    assert run.counts["applied"] == 10
