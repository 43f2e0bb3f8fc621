"""Applying a file of changes to one system (ledger.file_runs): every line must be in the system,
and the batch is closed only when it is whole, so the fixed lines or the rest of a canary can
join it."""

import json

import pytest

from adapters.memory import MemoryAdapter
from ledger import InvalidChange
from ledger.change_files import BatchOptions, ChangeFile
from ledger.file_runs import FileRun, checked_for


@pytest.fixture
def crm():
    return MemoryAdapter("crm", {"contacts": {k: {"stage": "lead"} for k in ("1", "2", "3")}})


def a_file(tmp_path, *changes):
    path = tmp_path / "changes.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in changes))
    return ChangeFile.read(path)


def sql(key, **extra):
    return {"entity": f"crm/contacts/{key}", "op": "update", "set": {"stage": "sql"}, **extra}


def apply_file(ledger, crm, file, batch="run-1", **options):
    given = BatchOptions(batch=batch)
    run = FileRun(ledger, crm, checked_for(file, "crm", given), given, **options)
    assert run.check() == []
    return run.apply()


def batch_status(ledger, name):
    return {b.name: b.status for b in ledger.batches()}[name]


def test_a_line_in_another_system_is_refused_naming_its_line(tmp_path):
    file = a_file(tmp_path, sql(1), {**sql(2), "entity": "erp/contacts/2"})
    with pytest.raises(InvalidChange) as refused:
        checked_for(file, "crm", BatchOptions(batch="run-1"))
    assert (refused.value.line, refused.value.field) == (2, "entity")
    assert "erp/contacts/2 is not in system 'crm'" in str(refused.value)


def test_a_line_naming_another_batch_is_refused_before_anything_is_written(tmp_path):
    file = a_file(tmp_path, sql(1), sql(2, batch="other"))
    with pytest.raises(InvalidChange, match=r"line 2: .* but --batch says 'run-1'"):
        checked_for(file, "crm", BatchOptions(batch="run-1"))


def test_a_whole_batch_is_closed(ledger, crm, tmp_path):
    summary = apply_file(ledger, crm, a_file(tmp_path, sql(1), sql(2)))
    assert (summary.counts, summary.left, summary.closed) == ({"applied": 2}, 0, True)
    assert not summary.stays_open and batch_status(ledger, "run-1") == "closed"


def test_a_canary_leaves_the_batch_open_for_the_rest(ledger, crm, tmp_path):
    file = a_file(tmp_path, sql(1), sql(2), sql(3))
    summary = apply_file(ledger, crm, file, limit=1)
    assert (summary.stopped, summary.left, summary.closed) == ("canary limit", 2, False)
    assert summary.stays_open and batch_status(ledger, "run-1") == "open"
    rest = apply_file(ledger, crm, file)
    assert rest.counts == {"already_applied": 1, "applied": 2} and rest.closed


def test_a_refused_line_leaves_the_batch_open(ledger, crm, tmp_path):
    file = a_file(tmp_path, sql(1), sql(2, expected={"stage": "mql"}))
    summary = apply_file(ledger, crm, file)
    assert [(o.entity, o.status) for o in summary.refused] == [("crm/contacts/2", "stale")]
    assert not summary.closed and summary.stays_open
    assert summary.to_json()["refused"][0]["entity"] == "crm/contacts/2"


def test_keep_open_leaves_a_whole_batch_open(ledger, crm, tmp_path):
    summary = apply_file(ledger, crm, a_file(tmp_path, sql(1)), keep_open=True)
    assert not summary.closed and not summary.stays_open
    assert batch_status(ledger, "run-1") == "open"
