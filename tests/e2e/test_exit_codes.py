"""One exit-code table for every command (ledger/cli/exit.py, docs/cli.md): 0 done, 1 error
(usage mistakes too), 2 done with items left for review, 3 some writes refused or failed."""

import contextlib
import json
import re
import sqlite3
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from fixtures.cli import crm_workspace

from ledger import open_ledger
from ledger.cli import main
from ledger.cli.exit import Exit
from ledger.lane_control import pause_lane

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


@pytest.fixture
def ws(tmp_path):
    """A CRM whose contacts 1-3 the ledger knows (contact 1 set to 'sql' by batch `seed`)."""
    invoke = crm_workspace(tmp_path, ["1", "2", "3"])
    lines = [
        {"entity": f"crm/contacts/{k}", "op": "update", "set": {"stage": "lead"}} for k in "23"
    ]
    lines.insert(0, {"entity": "crm/contacts/1", "op": "update", "set": {"stage": "sql"}})
    assert (
        invoke(
            "apply", jsonl(tmp_path / "seed.jsonl", *lines), "--system", "crm", "--batch", "seed"
        ).exit_code
        == 0
    )
    return invoke, tmp_path


def jsonl(path, *changes):
    path.write_text("".join(json.dumps(c) + "\n" for c in changes))
    return path


def outside_edit(tmp_path, key, stage):
    with contextlib.closing(sqlite3.connect(tmp_path / "crm.db")) as db:
        db.execute("UPDATE contacts SET stage = ? WHERE id = ?", (stage, key))
        db.commit()


def tamper(tmp_path):
    """One byte of the first stored event's state changed behind the ledger's back."""
    with contextlib.closing(sqlite3.connect(tmp_path / "ledger.db")) as db:
        db.execute("UPDATE stored_events SET state = CAST(state || x'20' AS BLOB) WHERE rowid = 1")
        db.commit()


def update(key, stage, **extra):
    return {"entity": f"crm/contacts/{key}", "op": "update", "set": {"stage": stage}, **extra}


def apply_stale(invoke, tmp_path):
    path = jsonl(
        tmp_path / "c.jsonl", update("2", "x"), update("3", "y", expected={"stage": "mql"})
    )
    return invoke("apply", path, "--system", "crm", "--batch", "b")


def notifier_failed(invoke, tmp_path):
    """A lane's command notifier that exits 1, and a pause to tell it."""
    failing = json.dumps([sys.executable, "-c", "import sys; sys.exit(1)"])
    config = tmp_path / "ledger.toml"
    config.write_text(
        config.read_text()
        + '[lanes.seed]\nnotify = ["pager"]\n'
        + f'[notifiers.pager]\ntype = "command"\nargv = {failing}\n'
    )
    with contextlib.closing(open_ledger(str(tmp_path / "ledger.db"))) as ledger:
        pause_lane(ledger, "seed", "checking", "ana")
    return invoke("notify")


def unknown_notifier(invoke, tmp_path):
    config = tmp_path / "ledger.toml"
    config.write_text(config.read_text() + '[lanes.seed]\nnotify = ["pager"]\n')
    return invoke("notify")


def reconcile_refused(invoke, tmp_path):
    outside_edit(tmp_path, "1", "customer")
    plan = tmp_path / "plan.bin"
    invoke("reconcile", "crm/contacts", "--plan", "--policy", "ledger", "--out", plan)
    outside_edit(tmp_path, "1", "churned")  # moved again since the plan
    return invoke("reconcile", "crm/contacts", "--apply", "--from", plan)


def reconcile_refused_new_spelling(invoke, tmp_path):
    outside_edit(tmp_path, "1", "customer")
    plan = tmp_path / "plan.bin"
    invoke("reconcile", "plan", "crm/contacts", "--policy", "ledger", "--out", plan)
    outside_edit(tmp_path, "1", "churned")  # moved again since the plan
    return invoke("reconcile", "apply", "crm/contacts", "--from", plan)


def baseline_checked(invoke, tmp_path, outside=False):
    invoke("reconcile", "baseline", "capture", "crm/contacts", tmp_path / "before.jsonl")
    if outside:
        outside_edit(tmp_path, "2", "customer")
    return invoke("reconcile", "baseline", "check", "crm/contacts", tmp_path / "before.jsonl")


CASES = {
    # command: [(what happens, run(invoke, tmp_path), expected code)]
    "init": [("done", lambda i, t: i("init"), Exit.DONE)],
    "record": [
        ("recorded", lambda i, t: i("record", "--entity", "crm/c/1", "--op", "create"), Exit.DONE),
        (
            "workflow paused",
            lambda i, t: (
                paused(i),
                i("record", "--entity", "crm/c/1", "--op", "create", "--workflow", "w"),
            )[1],
            Exit.REFUSED,
        ),
        ("bad input", lambda i, t: i("record", "--entity", "crm/c", "--op", "create"), Exit.ERROR),
    ],
    "import": [
        ("recorded", lambda i, t: i("import", jsonl(t / "i.jsonl", update("1", "a"))), Exit.DONE),
        ("bad line", lambda i, t: i("import", jsonl(t / "i.jsonl", {"op": "x"})), Exit.ERROR),
    ],
    "history": [
        ("shown", lambda i, t: i("history", "crm/contacts/1"), Exit.DONE),
        ("unknown record", lambda i, t: i("history", "crm/contacts/9"), Exit.ERROR),
    ],
    "state": [
        ("shown", lambda i, t: i("state", "crm/contacts/1"), Exit.DONE),
        ("bad point", lambda i, t: i("state", "crm/contacts/1", "--at", "nope"), Exit.ERROR),
    ],
    "collection": [
        ("shown", lambda i, t: i("collection", "crm/contacts"), Exit.DONE),
        ("bad name", lambda i, t: i("collection", "crm"), Exit.ERROR),
    ],
    "diff": [
        ("shown", lambda i, t: i("diff", "crm/contacts", "position:1"), Exit.DONE),
        ("bad point", lambda i, t: i("diff", "crm/contacts", "nope"), Exit.ERROR),
    ],
    "checkpoint": [
        ("named", lambda i, t: i("checkpoint", "c1"), Exit.DONE),
        ("taken", lambda i, t: (i("checkpoint", "c1"), i("checkpoint", "c1"))[1], Exit.ERROR),
    ],
    "checkpoints": [("shown", lambda i, t: i("checkpoints"), Exit.DONE)],
    "batches": [("shown", lambda i, t: i("batches"), Exit.DONE)],
    "close": [
        ("closed", lambda i, t: i("close", "seed"), Exit.DONE),
        ("unknown batch", lambda i, t: i("close", "nope"), Exit.ERROR),
    ],
    "apply": [
        (
            "workflow paused",
            lambda i, t: (
                paused(i),
                i(
                    "apply",
                    jsonl(t / "a.jsonl", update("2", "x")),
                    "--system",
                    "crm",
                    "--batch",
                    "b",
                    "--workflow",
                    "w",
                ),
            )[1],
            Exit.REFUSED,
        ),
        (
            "applied",
            lambda i, t: i(
                "apply", jsonl(t / "a.jsonl", update("2", "x")), "--system", "crm", "--batch", "b"
            ),
            Exit.DONE,
        ),
        (
            "canary stopped with changes left",
            lambda i, t: i(
                "apply",
                jsonl(t / "a.jsonl", update("2", "x"), update("3", "y")),
                "--system",
                "crm",
                "--batch",
                "b",
                "--limit",
                "1",
            ),
            Exit.REVIEW,
        ),
        ("a write refused", apply_stale, Exit.REFUSED),
        (
            "unknown system",
            lambda i, t: i(
                "apply", jsonl(t / "a.jsonl", update("2", "x")), "--system", "erp", "--batch", "b"
            ),
            Exit.ERROR,
        ),
    ],
    "recover": [("nothing to settle", lambda i, t: i("recover"), Exit.DONE)],
    "notify": [
        ("nothing to deliver", lambda i, t: i("notify"), Exit.DONE),
        ("a notifier failed", notifier_failed, Exit.REFUSED),
        ("a lane names an unknown notifier", unknown_notifier, Exit.ERROR),
    ],
    "metrics": [
        ("printed", lambda i, t: i("metrics"), Exit.DONE),
        ("no ledger", lambda i, t: i("metrics", "--db", t / "nowhere.db"), Exit.ERROR),
    ],
    "reconcile check": [
        ("clean", lambda i, t: i("reconcile", "check", "crm/contacts"), Exit.DONE),
        (
            "drift",
            lambda i, t: (
                outside_edit(t, "1", "customer"),
                i("reconcile", "check", "crm/contacts"),
            )[1],
            Exit.REVIEW,
        ),
        ("unknown system", lambda i, t: i("reconcile", "check", "erp/contacts"), Exit.ERROR),
    ],
    "reconcile plan": [
        (
            "clean",
            lambda i, t: i("reconcile", "plan", "crm/contacts", "--policy", "ledger"),
            Exit.DONE,
        ),
        (
            "drift planned",
            lambda i, t: (
                outside_edit(t, "1", "customer"),
                i("reconcile", "plan", "crm/contacts", "--policy", "ledger"),
            )[1],
            Exit.REVIEW,
        ),
        ("no policy", lambda i, t: i("reconcile", "plan", "crm/contacts"), Exit.ERROR),
    ],
    "reconcile apply": [
        (
            "corrected",
            lambda i, t: (
                outside_edit(t, "1", "customer"),
                i("reconcile", "apply", "crm/contacts", "--policy", "ledger"),
            )[1],
            Exit.DONE,
        ),
        ("a correction refused", reconcile_refused_new_spelling, Exit.REFUSED),
        ("no policy", lambda i, t: i("reconcile", "apply", "crm/contacts"), Exit.ERROR),
    ],
    "reconcile baseline capture": [
        (
            "captured",
            lambda i, t: i("reconcile", "baseline", "capture", "crm/contacts", t / "b"),
            Exit.DONE,
        ),
        (
            "unknown system",
            lambda i, t: i("reconcile", "baseline", "capture", "erp/contacts", t / "b"),
            Exit.ERROR,
        ),
    ],
    "reconcile baseline check": [
        ("explained", baseline_checked, Exit.DONE),
        ("drift", lambda i, t: baseline_checked(i, t, outside=True), Exit.REVIEW),
        (
            "not a baseline",
            lambda i, t: i("reconcile", "baseline", "check", "crm/contacts", t / "ledger.toml"),
            Exit.ERROR,
        ),
    ],
    "receipt": [
        ("shown", lambda i, t: i("receipt", "crm/contacts/1@2"), Exit.DONE),
        ("unknown action", lambda i, t: i("receipt", "nope"), Exit.ERROR),
    ],
    "runbook": [
        ("written", lambda i, t: i("runbook", "lead-sync", "--out", t / "r.md"), Exit.DONE),
        ("bad workflow name", lambda i, t: i("runbook", "a b"), Exit.ERROR),
    ],
    "token create": [
        ("created", lambda i, t: i("token", "create", "zap", "--scope", "read"), Exit.DONE),
        ("unknown scope", lambda i, t: i("token", "create", "z", "--scope", "nope"), Exit.ERROR),
    ],
    "token list": [("listed", lambda i, t: i("token", "list"), Exit.DONE)],
    "token revoke": [
        (
            "revoked",
            lambda i, t: (
                i("token", "create", "z", "--scope", "read"),
                i("token", "revoke", "z"),
            )[1],
            Exit.DONE,
        ),
        ("unknown token", lambda i, t: i("token", "revoke", "nope"), Exit.ERROR),
    ],
    "track": [
        ("baseline taken", lambda i, t: i("track", "crm/contacts"), Exit.DONE),
        (
            "drift left alone",
            lambda i, t: (outside_edit(t, "1", "customer"), i("track", "crm/contacts"))[1],
            Exit.REVIEW,
        ),
        ("not SYSTEM/COLLECTION", lambda i, t: i("track", "crm"), Exit.ERROR),
    ],
    "pause": [
        ("paused", lambda i, t: i("pause", "w", "--reason", "r"), Exit.DONE),
        ("no reason", lambda i, t: i("pause", "w", "--reason", " "), Exit.ERROR),
    ],
    "enable": [
        (
            "overridden",
            lambda i, t: (paused(i), i("enable", "w", "--reason", "r", "--override"))[1],
            Exit.DONE,
        ),
        (
            "no rule to prove",
            lambda i, t: (paused(i), i("enable", "w", "--reason", "r"))[1],
            Exit.DONE,
        ),
        ("active", lambda i, t: i("enable", "w", "--reason", "r"), Exit.ERROR),
    ],
    "canary": [
        (
            "admitted",
            lambda i, t: (paused(i), i("canary", "w", "--batch", "c", "--limit", "1"))[1],
            Exit.DONE,
        ),
        ("active", lambda i, t: i("canary", "w", "--batch", "c", "--limit", "1"), Exit.ERROR),
    ],
    "lanes": [("shown", lambda i, t: (paused(i), i("lanes"))[1], Exit.DONE)],
    "lane": [
        ("shown", lambda i, t: i("lane", "w"), Exit.DONE),
        ("bad name", lambda i, t: i("lane", "w w"), Exit.ERROR),
    ],
    "verify": [
        ("intact", lambda i, t: i("verify"), Exit.DONE),
        ("a byte changed", lambda i, t: (tamper(t), i("verify"))[1], Exit.ERROR),
    ],
    "digest": [
        ("exported", lambda i, t: i("digest", "--out", t / "d.json"), Exit.DONE),
        ("file exists", lambda i, t: i("digest", "--out", t / "ledger.toml"), Exit.ERROR),
    ],
}


def paused(invoke):
    assert invoke("pause", "w", "--reason", "r").exit_code == 0


OLD_SPELLINGS = {
    # kept for a release, with the same codes as the subcommands they stand for
    "reconcile": [
        ("clean", lambda i, t: i("reconcile", "crm/contacts"), Exit.DONE),
        (
            "drift",
            lambda i, t: (outside_edit(t, "1", "customer"), i("reconcile", "crm/contacts"))[1],
            Exit.REVIEW,
        ),
        ("a correction refused", reconcile_refused, Exit.REFUSED),
        ("unknown system", lambda i, t: i("reconcile", "erp/contacts"), Exit.ERROR),
    ],
}
EVERY_SPELLING = {**CASES, **OLD_SPELLINGS}


@pytest.mark.parametrize(
    "command, outcome, run, code",
    [(c, o, run, code) for c, cases in EVERY_SPELLING.items() for o, run, code in cases],
    ids=[f"{c}: {outcome}" for c, cases in EVERY_SPELLING.items() for outcome, _, _ in cases],
)
def test_each_command_exits_with_the_code_of_the_table(ws, command, outcome, run, code):
    invoke, tmp_path = ws
    result = run(invoke, tmp_path)
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


def command_paths(group=main, prefix=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from command_paths(command, (*prefix, name))
        else:
            yield (*prefix, name)


def test_every_command_is_in_the_table_or_owned_elsewhere():
    owned_by_rollback = {"rollback", "replay"}  # their codes are tested with ledger/rollback.py
    owned_by_rollback.add("serve")  # runs until stopped: tests/e2e/test_serve.py
    paths = {" ".join(p) for p in command_paths() if p[0] not in owned_by_rollback}
    assert paths == set(CASES)


@pytest.mark.parametrize("path", sorted(command_paths()), ids=" ".join)
def test_a_usage_mistake_exits_1_for_every_command(path):
    result = CliRunner().invoke(main, [*path, "--no-such-option"])
    assert result.exit_code == Exit.ERROR, result.output
    assert "No such option '--no-such-option'" in result.output
    assert CliRunner().invoke(main, [*path, "--help"]).exit_code == Exit.DONE


def test_an_unknown_command_exits_1():
    result = CliRunner().invoke(main, ["nope"])
    assert result.exit_code == Exit.ERROR and "No such command 'nope'" in result.output


def test_the_table_is_documented_once_with_every_code():
    documented = DOCS.read_text()
    table = re.search(r"^## Exit codes\n(.*?)^## ", documented, re.MULTILINE | re.DOTALL)
    assert table is not None
    for code in Exit:
        assert re.search(rf"^\| {code.value} \|", table.group(1), re.MULTILINE), code
