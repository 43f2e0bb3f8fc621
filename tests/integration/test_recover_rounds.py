"""`recover` settles many unsettled writes in rounds: a read per collection and at most two
ledger transactions per round, with exactly the outcomes settling them one by one gave."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.memory import MemoryAdapter
from ledger import Address, Change, Ledger, Run, Target
from ledger.errors import InvalidChange
from ledger.settlement import RECOVER_CHUNK, recover

N = 2 * RECOVER_CHUNK + 200  # three rounds


def contact(key: str) -> Address:
    return Address("crm", "contacts", key)


class HalfThenDies:
    """Writes the even keys of a chunk, then the process dies before settling anything."""

    def __init__(self, adapter: MemoryAdapter) -> None:
        self.adapter, self.system = adapter, adapter.system

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)

    def write(self, collection: str, writes: Any) -> Any:
        self.adapter.write(collection, [w for w in writes if int(w.key) % 2 == 0])
        raise SystemExit("died after writing half")


def _crashed_run(ledger: Ledger, crm: MemoryAdapter) -> None:
    changes = [Change(contact(f"{i:05d}"), "update", values={"stage": "sql"}) for i in range(N)]
    with pytest.raises(SystemExit):
        Run(ledger, "run-1").apply(Target(HalfThenDies(crm), "contacts"), changes, chunk_size=N)
    assert len(ledger.index.pending("run-1")) == N


@pytest.fixture
def crm() -> MemoryAdapter:
    records = {f"{i:05d}": {"stage": "lead", "owner": "ann"} for i in range(N)}
    return MemoryAdapter("crm", {"contacts": records})


def test_recover_settles_each_write_as_it_landed_in_a_few_transactions(
    ledger: Ledger, crm: MemoryAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crashed_run(ledger, crm)
    saves: list[int] = []
    insert = ledger.recorder.insert_events

    def counted(events: Any, **kwargs: Any) -> Any:
        saves.append(len(events))
        return insert(events, **kwargs)

    monkeypatch.setattr(ledger.recorder, "insert_events", counted)
    outcomes = recover(ledger, {"crm": crm})

    assert len(saves) <= 2 * 3  # landed and not landed, per round of RECOVER_CHUNK
    by_entity = {o.entity: o.status for o in outcomes}
    assert len(outcomes) == len(by_entity) == N
    for i in range(N):
        landed = i % 2 == 0
        assert by_entity[f"crm/contacts/{i:05d}"] == ("applied" if landed else "not_applied")
    assert ledger.history(contact("00000"))[-1].delta == {"stage": ("lead", "sql")}
    with pytest.raises(Exception, match="no recorded actions"):
        ledger.history(contact("00001"))
    assert ledger.index.pending() == []
    assert recover(ledger, {"crm": crm}) == []  # nothing settled twice


def test_recover_without_a_system_it_needs_settles_nothing(
    ledger: Ledger, crm: MemoryAdapter
) -> None:
    _crashed_run(ledger, crm)
    other = MemoryAdapter("erp", {"orders": {"1": {"state": "open"}}})
    with pytest.raises(InvalidChange, match="needs system 'crm' to be configured"):
        recover(ledger, {"erp": other})
    assert len(ledger.index.pending("run-1")) == N
