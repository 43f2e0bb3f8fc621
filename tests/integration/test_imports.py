"""Importing a file of changes (ledger.imports, ledger.change_files): the batch is named for the
file's content, each line's fingerprint for its batch, number and text, and a line that
contradicts an option given for all of them is refused naming its line."""

import json

import pytest

from ledger import InvalidChange
from ledger.change_files import BatchOptions, ChangeFile
from ledger.changes import line_fingerprint
from ledger.imports import PreparedImport, import_batch_id


def a_file(tmp_path, *changes, name="changes.jsonl"):
    path = tmp_path / name
    path.write_bytes(
        b"".join(c if isinstance(c, bytes) else json.dumps(c).encode() + b"\n" for c in changes)
    )
    return path


CREATE = {"entity": "crm/contacts/1", "op": "create", "set": {"n": 1}}
UPDATE = {"entity": "crm/contacts/1", "op": "update", "set": {"n": 2}}


def test_the_batch_is_named_for_the_files_content(tmp_path):
    one = ChangeFile.read(a_file(tmp_path, CREATE, UPDATE, name="a.jsonl"))
    same = ChangeFile.read(a_file(tmp_path, CREATE, UPDATE, name="b.jsonl"))
    other = ChangeFile.read(a_file(tmp_path, CREATE, name="c.jsonl"))
    named = PreparedImport.of(one, BatchOptions()).options.batch
    assert (
        named
        == import_batch_id(one.content)
        == PreparedImport.of(same, BatchOptions()).options.batch
    )
    assert named.startswith("import-") and len(named) == len("import-") + 16
    assert PreparedImport.of(other, BatchOptions()).options.batch != named
    assert PreparedImport.of(one, BatchOptions(batch="run-1")).options.batch == "run-1"


def test_each_line_is_fingerprinted_by_its_batch_number_and_text(tmp_path):
    own = {**UPDATE, "fingerprint": "mine"}
    elsewhere = {**UPDATE, "set": {"n": 3}, "batch": "X"}
    file = ChangeFile.read(a_file(tmp_path, CREATE, b"\n", own, elsewhere))
    assert file.line_numbers == (1, 3, 4)  # blank lines skipped, numbers kept
    prepared = PreparedImport.of(file, BatchOptions(batch=None))
    batch = prepared.options.batch
    assert [c.fingerprint for c in prepared.changes] == [
        line_fingerprint(batch, 1, json.dumps(CREATE).encode()),
        "mine",
        line_fingerprint("X", 4, json.dumps(elsewhere).encode()),  # the line's own batch
    ]


def test_a_line_contradicting_an_option_is_refused_naming_line_and_field(tmp_path):
    file = ChangeFile.read(a_file(tmp_path, CREATE, {**UPDATE, "workflow": "sync"}))
    with pytest.raises(InvalidChange) as refused:
        PreparedImport.of(file, BatchOptions(workflow="other"))
    assert (refused.value.line, refused.value.field) == (2, "workflow")
    assert "the change says workflow 'sync' but --workflow says 'other'" in str(refused.value)
    PreparedImport.of(file, BatchOptions(workflow="sync"))  # agreeing is no contradiction


def test_a_file_without_changes_is_refused_naming_it(tmp_path):
    path = a_file(tmp_path, b"\n  \n")
    with pytest.raises(InvalidChange, match="holds no changes"):
        PreparedImport.of(ChangeFile.read(path), BatchOptions())


def test_a_line_that_is_not_utf8_is_refused_naming_it(tmp_path):
    path = a_file(tmp_path, CREATE, b'{"entity": "crm/contacts/2", "op": "create", "x": "\xff"}\n')
    with pytest.raises(InvalidChange) as refused:
        ChangeFile.read(path)
    assert refused.value.line == 2 and "is not UTF-8 text (byte 0xff" in str(refused.value)


def test_an_import_is_recorded_once_and_closes_its_batch_unless_kept_open(ledger, tmp_path):
    file = ChangeFile.read(a_file(tmp_path, CREATE, UPDATE))
    first = PreparedImport.of(file, BatchOptions()).record(ledger)
    again = PreparedImport.of(file, BatchOptions()).record(ledger)
    assert (first.recorded, again.recorded, again.already_recorded) == (2, 0, 2)
    assert first.to_json() == {
        "batch": import_batch_id(file.content),
        "batches": [import_batch_id(file.content)],
        "recorded": 2,
        "already_recorded": 0,
        "closed": True,
    }
    assert [b.status for b in ledger.batches()] == ["closed"]
    more = ChangeFile.read(a_file(tmp_path, {**UPDATE, "set": {"n": 5}}, name="more.jsonl"))
    kept = PreparedImport.of(more, BatchOptions(batch="open-run")).record(ledger, keep_open=True)
    assert not kept.closed
    assert {b.name: b.status for b in ledger.batches()}["open-run"] == "open"
