"""Notices from the command line: every command that wrote delivers what it wrote (a hook after
its own work and output), a failing notifier is a warning that never changes the exit code,
`ledger notify` delivers on demand (once, across processes), `ledger metrics` prints the
ledger's figures, and log lines carry their correlation ids."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from crm_tables import make_contacts
from notice_server import NoticeServer

from ledger import open_ledger
from ledger.cli import main
from ledger.lane_control import lane, pause_lane

LEDGER = [sys.executable, "-m", "ledger"]
SECRET = "e2e-secret"


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LEDGER, *args], env=env, capture_output=True, text=True)


def configure(tmp_path: Path, url: str, timeout: int = 2) -> None:
    config, base = tmp_path / "ledger.toml", tmp_path / "systems.toml"
    if not base.exists():
        base.write_text(config.read_text())
    config.write_text(
        base.read_text()
        + '\n[lanes.lead-sync]\nsystems = ["crm"]\nnotify = ["ops"]\n'
        + f'\n[notifiers.ops]\ntype = "webhook"\nurl = "{url}"\nsecret_env = "LEDGER_E2E_SECRET"'
        + f"\ntimeout = {timeout}\nretries = 1\nbackoff = 0.01\n"
    )


@pytest.fixture
def applied(workspace: tuple[Path, Path, dict[str, str]]) -> tuple[Path, dict[str, str]]:
    """Batch b1 of workflow lead-sync through the SQL adapter: two contacts updated."""
    tmp_path, crm, env = workspace
    env = {**env, "LEDGER_E2E_SECRET": SECRET}
    make_contacts(f"sqlite:///{crm}", 3, stage="lead", owner="ann").dispose()
    lines = tmp_path / "b1.jsonl"
    changes = [
        {"entity": "crm/contacts/00000", "op": "update", "set": {"stage": "sql"}},
        {"entity": "crm/contacts/00001", "op": "update", "set": {"stage": "sql"}},
    ]
    lines.write_text("".join(json.dumps(change) + "\n" for change in changes))
    done = run_cli(
        env, "apply", str(lines), "--system", "crm", "--batch", "b1", "--workflow", "lead-sync"
    )
    assert done.returncode == 0, done.stderr
    return tmp_path, env


def test_a_rollback_applied_is_posted_by_the_command_itself(applied: Any) -> None:
    tmp_path, env = applied
    with NoticeServer() as server:
        configure(tmp_path, server.url)
        done = run_cli(env, "rollback", "apply", "--batch", "b1")
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    (request,) = server.requests
    signed = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Ledger-Signature"] == f"sha256={signed}"
    notice = json.loads(request.body)
    assert notice["kind"] == "rollback.applied"
    assert notice["workflows"] == ["lead-sync"]
    assert notice["details"]["compensations"] == 2


def test_a_notifier_down_warns_in_one_line_and_the_exit_code_stands(applied: Any) -> None:
    tmp_path, env = applied
    with NoticeServer() as gone:
        url = gone.url
    configure(tmp_path, url)
    done = run_cli(env, "rollback", "apply", "--batch", "b1")
    assert done.returncode == 0, done.stderr
    (warning,) = [line for line in done.stderr.splitlines() if line.startswith("warning")]
    assert warning.startswith("warning: notifier 'ops' failed to deliver rollback.applied")
    assert "after 2 attempt(s)" in warning
    listed = run_cli(env, "rollback", "status", "--json")
    assert [s["status"] for s in json.loads(listed.stdout)] == ["closed"]

    still_down = run_cli(env, "notify", "--json")
    assert still_down.returncode == 3
    (failure,) = json.loads(still_down.stdout)["failures"]
    assert failure["kind"] == "rollback.applied" and failure["attempts"] == 4

    with NoticeServer() as server:
        configure(tmp_path, server.url)
        later = run_cli(env, "notify")
    assert later.returncode == 0, later.stderr
    assert "ops: rollback.applied" in later.stdout
    assert [json.loads(r.body)["kind"] for r in server.requests] == ["rollback.applied"]


def test_a_pause_stands_when_its_notifier_is_down(applied: Any) -> None:
    tmp_path, env = applied
    with NoticeServer() as gone:
        url = gone.url
    configure(tmp_path, url)
    ledger = open_ledger(env["LEDGER_DB"])
    pause_lane(ledger, "lead-sync", "bad mapping", "ana")
    done = run_cli(env, "notify")
    assert done.returncode == 3
    assert "failed to deliver lane.paused" in done.stderr
    assert lane(ledger, "lead-sync").state == "paused"
    ledger.close()


def test_two_notify_processes_at_once_deliver_once(applied: Any) -> None:
    tmp_path, env = applied
    ledger = open_ledger(env["LEDGER_DB"])
    pause_lane(ledger, "lead-sync", "bad mapping", "ana")
    ledger.close()
    with NoticeServer() as server:
        configure(tmp_path, server.url, timeout=60)  # the held request must not time out
        server.hold()
        first = subprocess.Popen([*LEDGER, "notify", "--json"], env=env, stdout=subprocess.PIPE)
        assert server.entered.wait(30)  # the first process is mid-request, holding its claim
        second = run_cli(env, "notify", "--json")
        server.release()
        out, _ = first.communicate(timeout=30)
    assert json.loads(second.stdout)["busy"] == ["ops"]
    assert len(json.loads(out)["delivered"]) == 1
    assert len(server.requests) == 1


def test_follow_delivers_what_arrives_later(applied: Any) -> None:
    tmp_path, env = applied
    with NoticeServer() as server:
        configure(tmp_path, server.url)
        follower = subprocess.Popen(
            [*LEDGER, "notify", "--follow", "--interval", "0.1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            ledger = open_ledger(env["LEDGER_DB"])
            pause_lane(ledger, "lead-sync", "seen by the follower", "ana")
            ledger.close()
            assert server.received.wait(30)
        finally:
            follower.terminate()
            follower.wait(30)
    assert json.loads(server.requests[0].body)["kind"] == "lane.paused"


def test_a_lane_naming_an_unknown_notifier_is_one_line_naming_it(applied: Any) -> None:
    tmp_path, env = applied
    config = tmp_path / "ledger.toml"
    config.write_text(config.read_text() + '\n[lanes.lead-sync]\nnotify = ["pager"]\n')
    done = run_cli(env, "notify")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: lanes.lead-sync.notify names 'pager', which is not a configured notifier "
        "([notifiers.NAME]: none is configured)"
    ]


def test_a_secret_written_in_the_file_is_refused(applied: Any) -> None:
    tmp_path, env = applied
    config = tmp_path / "ledger.toml"
    config.write_text(
        config.read_text() + '\n[notifiers.ops]\ntype = "webhook"\nurl = "http://x"\nsecret = "s"\n'
    )
    done = run_cli(env, "notify")
    assert done.returncode == 1
    assert "notifiers.ops.secret: never write a secret in ledger.toml" in done.stderr


def test_metrics_print_the_ledgers_figures(applied: Any) -> None:
    _, env = applied
    assert run_cli(env, "rollback", "apply", "--batch", "b1").returncode == 0
    ledger = open_ledger(env["LEDGER_DB"])
    pause_lane(ledger, "lead-sync", "checking", "ana")
    ledger.close()
    done = run_cli(env, "metrics")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert 'ledger_actions_total{operation="update",workflow="lead-sync"} 2.0' in text
    assert 'ledger_actions_total{operation="update",workflow="rollback"} 2.0' in text
    assert "ledger_rollbacks_applied_total 1.0" in text
    assert "ledger_rollback_success_ratio 1.0" in text
    assert 'ledger_lane_paused{workflow="lead-sync"} 1.0' in text
    assert 'ledger_pauses_total{by="hand",workflow="lead-sync"} 1.0' in text
    as_json = json.loads(run_cli(env, "metrics", "--json").stdout)
    assert "ledger_actions" in {family["name"] for family in as_json}


def test_json_logs_carry_the_run_id_and_the_commands_correlation_ids(applied: Any) -> None:
    _, env = applied
    env = {**env, "LEDGER_LOG": "info"}
    done = run_cli(env, "--log-format", "json", "rollback", "apply", "--batch", "b1")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    (notice,) = [line for line in lines if line["event"] == "rollback.applied"]
    assert notice["batch"] == ["b1"]  # the command's own ids, on the hook's lines too
    assert notice["workflows"] == ["lead-sync"] and notice["plan"]
    (command,) = [line for line in lines if line["event"] == "command"]
    assert command["command"].endswith("rollback apply") and command["batch"] == ["b1"]
    assert all(line["run_id"] == lines[0]["run_id"] for line in lines)


def test_a_bad_log_level_is_one_line(applied: Any) -> None:
    _, env = applied
    done = run_cli({**env, "LEDGER_LOG": "loud"}, "batches")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: LEDGER_LOG='loud' is not a log level; use debug, info, warning or error"
    )


needs_pause = pytest.mark.skipif(
    "pause" not in main.commands, reason="`ledger pause` comes with the lanes' CLI"
)


@needs_pause
def test_ledger_pause_tells_the_webhook_and_a_webhook_down_changes_nothing(applied: Any) -> None:
    tmp_path, env = applied
    with NoticeServer() as gone:
        url = gone.url
    configure(tmp_path, url)
    down = run_cli(env, "pause", "lead-sync", "--reason", "bad mapping")
    assert down.returncode == 0, down.stderr
    (warning,) = down.stderr.strip().splitlines()
    assert warning.startswith("warning: notifier 'ops' failed to deliver lane.paused")
    ledger = open_ledger(env["LEDGER_DB"])
    assert lane(ledger, "lead-sync").state == "paused"
    ledger.close()
    with NoticeServer() as server:
        configure(tmp_path, server.url)
        again = run_cli(env, "pause", "billing", "--reason", "month end")
        assert again.returncode == 0 and again.stderr == ""
    assert [json.loads(r.body)["kind"] for r in server.requests] == ["lane.paused"]
    assert json.loads(server.requests[0].body)["details"]["reason"] == "bad mapping"


def test_a_lane_paused_by_rollback_plan_is_posted_by_the_command_itself(
    workspace: tuple[Path, Path, dict[str, str]], applied: Any
) -> None:
    tmp_path, env = applied
    crm = workspace[1]
    with NoticeServer() as server:
        configure(tmp_path, server.url)
        config = tmp_path / "ledger.toml"
        config.write_text(
            config.read_text().replace(
                'notify = ["ops"]\n',
                'notify = ["ops"]\ntriggers.rollback_conflicts = { more_than = 0 }\n',
            )
        )
        with contextlib.closing(sqlite3.connect(crm)) as db:  # an edit after batch b1
            db.execute("UPDATE contacts SET stage = 'customer' WHERE id = '00000'")
            db.commit()
        done = run_cli(env, "rollback", "plan", "--batch", "b1")
    assert done.returncode == 2, done.stderr
    assert "lane lead-sync paused" in done.stdout
    kinds = [json.loads(r.body)["kind"] for r in server.requests]
    assert kinds and all(kind.startswith("lane.") for kind in kinds), kinds
