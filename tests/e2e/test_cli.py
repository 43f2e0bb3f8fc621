"""The `ledger` command, driven as a user would, on a real SQLite file."""

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ledger.cli import main

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


@pytest.fixture
def run(tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "ledger.db")

    def invoke(*args, input=None):
        return runner.invoke(main, [*args, "--db", db], input=input, catch_exceptions=False)

    assert invoke("init").exit_code == 0
    return invoke


def lines(path, *changes):
    path.write_text("".join(json.dumps(c) + "\n" for c in changes))
    return str(path)


def test_record_from_flags_and_read_it_back(run):
    result = run(
        "record",
        "--entity",
        "crm/contacts/1",
        "--op",
        "create",
        "--set",
        "zip=01234",
        "--set-json",
        "score=10",
        "--batch",
        "b1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    receipt = json.loads(result.stdout)
    absent = {"$absent": True}  # created: the fields did not exist before
    assert receipt["delta"] == {"score": [absent, 10], "zip": [absent, "01234"]}
    assert receipt["absent"] == ["score", "zip"]
    state = json.loads(run("state", "crm/contacts/1", "--json").stdout)
    assert state["fields"] == {"zip": "01234", "score": 10}


def test_record_from_a_json_object_on_stdin(run):
    change = {"entity": "crm/contacts/1", "op": "create", "set": {"stage": "lead"}}
    result = run("record", "-", "--json", input=json.dumps(change))
    assert json.loads(result.stdout)["version"] == 1


def test_json_and_flags_together_are_refused(run):
    result = run("record", '{"entity": "crm/contacts/1", "op": "create"}', "--op", "create")
    assert result.exit_code == 1
    assert "either as JSON or as flags" in result.output


def test_import_is_all_or_nothing_and_names_the_bad_line(run, tmp_path):
    path = lines(
        tmp_path / "changes.jsonl",
        {"entity": "crm/contacts/1", "op": "create", "set": {"stage": "lead"}},
        {"entity": "crm/contacts/2", "op": "upsert", "set": {"stage": "lead"}},
    )
    result = run("import", path)
    assert result.exit_code == 1
    assert (
        "line 2: crm/contacts/2: op 'upsert' is not one of create, update, delete" in result.output
    )
    assert run("history", "crm/contacts/1").exit_code == 1


def test_import_names_the_line_of_a_contradicting_before_value(run, tmp_path):
    run("record", "--entity", "crm/contacts/1", "--op", "create", "--set", "stage=lead")
    path = lines(
        tmp_path / "changes.jsonl",
        {"entity": "crm/contacts/1", "op": "update", "set": {"stage": "sql"}},
        {
            "entity": "crm/contacts/1",
            "op": "update",
            "set": {"stage": "x"},
            "before": {"stage": "lead"},
        },
    )
    result = run("import", path)
    assert result.exit_code == 1
    assert "line 2: crm/contacts/1: field 'stage' is 'sql' in the ledger" in result.output
    assert len(json.loads(run("history", "crm/contacts/1", "--json").stdout)) == 1


def test_importing_the_same_file_twice_records_it_once(run, tmp_path):
    path = lines(
        tmp_path / "changes.jsonl",
        {"entity": "crm/contacts/1", "op": "create", "set": {"n": 1}},
        {"entity": "crm/contacts/1", "op": "update", "set": {"n": 2}},
        {"entity": "crm/contacts/1", "op": "update", "set": {"n": 1}},
    )
    first = json.loads(run("import", path, "--json").stdout)
    again = json.loads(run("import", path, "--json").stdout)
    assert (first["recorded"], again["recorded"], again["already_recorded"]) == (3, 0, 3)
    batches = json.loads(run("batches", "--json").stdout)
    assert [(b["status"], b["actions"]) for b in batches] == [("closed", 3)]


def test_state_collection_diff_and_checkpoints(run):
    run("record", "--entity", "crm/contacts/1", "--op", "create", "--set", "stage=lead")
    run("checkpoint", "before")
    run("record", "--entity", "crm/contacts/1", "--op", "update", "--set", "stage=sql")
    assert json.loads(run("state", "crm/contacts/1", "--at", "before", "--json").stdout)[
        "fields"
    ] == {"stage": "lead"}
    assert json.loads(run("state", "crm/contacts/1", "--version", "2", "--json").stdout)[
        "fields"
    ] == {"stage": "sql"}
    rows = [
        json.loads(line)
        for line in run(
            "collection", "crm/contacts", "--at", "before", "--json"
        ).stdout.splitlines()
    ]
    assert [r["fields"] for r in rows] == [{"stage": "lead"}]
    diff = json.loads(run("diff", "crm/contacts", "before", "--json").stdout)
    assert diff == [
        {"entity": "crm/contacts/1", "change": "changed", "fields": {"stage": ["lead", "sql"]}}
    ]
    assert "stage" in run("diff", "crm/contacts/1", "before").output
    assert json.loads(run("checkpoints", "--json").stdout)[0]["checkpoint"] == "before"


@pytest.mark.parametrize(
    "args, message",
    [
        (("state", "crm/contacts"), "system/collection/key"),
        (("state", "crm/contacts/1", "--at", "2026-11-24T10:00"), "no timezone"),
        (("state", "crm/contacts/1", "--at", "nope"), "no checkpoint named 'nope'"),
        (("record", "--entity", "crm/contacts/1", "--op", "update", "--set", "a"), "FIELD=VALUE"),
        (("record", "--entity", "crm/contacts/1", "--op", "create", "--set-json", "a=NaN"), "NaN"),
        (("close", "nope"), "no batch named 'nope'"),
    ],
)
def test_bad_input_is_a_clear_error_and_exit_code_1(run, args, message):
    result = run(*args)
    assert result.exit_code == 1
    assert message in result.output


def test_a_missing_ledger_file_is_not_created_by_reading(tmp_path):
    result = CliRunner().invoke(main, ["batches", "--db", str(tmp_path / "nope.db")])
    assert result.exit_code == 1
    assert "run `ledger init`" in result.output
    assert not (tmp_path / "nope.db").exists()


def test_every_command_has_help_and_is_documented():
    documented = DOCS.read_text()
    for name, command in main.commands.items():
        assert command.help, name
        assert re.search(rf"^## `ledger {name}", documented, re.MULTILINE), name
        assert CliRunner().invoke(main, [name, "--help"]).exit_code == 0


def command_paths(group=main, prefix=()):
    """Every command a user can run, groups' subcommands included: ("rollback", "plan"), …"""
    for name, command in group.commands.items():
        path = (*prefix, name)
        yield path, command
        if isinstance(command, click.Group):
            yield from command_paths(command, path)


def documented_commands():
    """The commands named in docs/cli.md's headings, each in backticks ("ledger rollback plan");
    a heading may name several."""
    headings = re.findall(r"^## (.*)$", DOCS.read_text(), re.MULTILINE)
    return {name for heading in headings for name in re.findall(r"`ledger ([^`]+)`", heading)}


@pytest.mark.parametrize(
    "path, command", list(command_paths()), ids=[" ".join(p) for p, _ in command_paths()]
)
def test_every_subcommand_has_help_and_a_heading_in_the_docs(path, command):
    shown = CliRunner().invoke(main, [*path, "--help"])
    assert shown.exit_code == 0, shown.output
    assert f"Usage: main {' '.join(path)}" in shown.output
    assert command.help, path
    if isinstance(command, click.Group):  # documented by its subcommands' headings
        assert any(d.startswith(f"{' '.join(path)} ") for d in documented_commands()), path
    else:
        assert " ".join(path) in documented_commands(), path


def test_the_docs_name_no_command_that_does_not_exist():
    paths = {" ".join(p) for p, _ in command_paths()}
    assert documented_commands() <= paths


def test_import_refuses_a_line_naming_another_batch_than_the_option(run, tmp_path):
    path = lines(
        tmp_path / "changes.jsonl",
        {"entity": "crm/contacts/1", "op": "create", "set": {"n": 1}},
        {"entity": "crm/contacts/2", "op": "create", "set": {"n": 2}, "batch": "X"},
    )
    result = run("import", path, "--batch", "Y")
    assert result.exit_code == 1
    assert "line 2: crm/contacts/2: the change says batch 'X' but --batch says 'Y'" in result.output
    assert json.loads(run("batches", "--json").stdout) == []
    workflow = lines(
        tmp_path / "w.jsonl",
        {"entity": "crm/contacts/1", "op": "create", "set": {"n": 1}, "workflow": "sync"},
    )
    refused = run("import", workflow, "--workflow", "other")
    assert "line 1: crm/contacts/1: the change says workflow 'sync'" in refused.output


def test_import_reports_the_batches_its_lines_name(run, tmp_path):
    path = lines(
        tmp_path / "changes.jsonl",
        {"entity": "crm/contacts/1", "op": "create", "set": {"n": 1}, "batch": "X"},
    )
    summary = json.loads(run("import", path, "--json").stdout)
    assert (summary["batch"], summary["batches"], summary["recorded"]) == ("X", ["X"], 1)
    assert "batch X: 0 recorded, 1 already recorded" in run("import", path, "--batch", "X").output


def test_record_refuses_a_change_naming_another_batch_than_the_option(run):
    change = {"entity": "crm/contacts/1", "op": "create", "set": {"n": 1}, "batch": "X"}
    result = run("record", json.dumps(change), "--batch", "Y")
    assert result.exit_code == 1 and "batch 'X' but --batch says 'Y'" in result.output


def test_a_retried_record_without_a_batch_records_nothing_twice(run):
    create = ("record", "--entity", "crm/contacts/1", "--op", "create", "--set", "stage=lead")
    update = ("record", "--entity", "crm/contacts/1", "--op", "update", "--set", "stage=sql")
    back = ("record", "--entity", "crm/contacts/1", "--op", "update", "--set", "stage=lead")
    first = json.loads(run(*create, "--json").stdout)
    retry = run(*create)
    assert retry.exit_code == 0 and retry.output.startswith("already recorded: create")
    assert json.loads(run(*update, "--json").stdout)["version"] == 2
    assert run(*update).output.startswith("already recorded: update crm/contacts/1 v2")
    # The same change made again after another one is a new action, in a batch of its own.
    assert json.loads(run(*back, "--json").stdout)["version"] == 3
    assert json.loads(run(*update, "--json").stdout)["version"] == 4
    history = json.loads(run("history", "crm/contacts/1", "--json").stdout)
    assert [a["version"] for a in history] == [1, 2, 3, 4]
    assert history[0]["batch"] == first["batch"] and first["batch"].startswith("record-")
    assert len({a["batch"] for a in history}) == 4
