"""Runs through adapters: compare-and-set, exactly once, settled or recovered after a crash."""

import pytest

from adapters.memory import MemoryAdapter
from ledger import ABSENT, Address, Change, Run, Target, open_ledger
from ledger.errors import CanaryLimit, StaleWrite, TransientError
from ledger.ports import Write
from ledger.settlement import recover


@pytest.fixture
def crm():
    return MemoryAdapter(
        "crm",
        {
            "contacts": {
                "1": {"stage": "lead", "owner": "ann"},
                "2": {"stage": "mql", "owner": "bo"},
            }
        },
    )


def contact(key):
    return Address("crm", "contacts", key)


class Flaky:
    """Wraps an adapter to fail its next writes before or after they reach the target."""

    def __init__(self, adapter, fail_before=0, fail_after=0, crash_after=False, edit=None):
        self.adapter, self.system = adapter, adapter.system
        self.fail_before, self.fail_after, self.crash_after, self.edit = (
            fail_before,
            fail_after,
            crash_after,
            edit,
        )
        self.writes = 0

    def __getattr__(self, name):  # read, scan, normalize, … as the wrapped adapter does
        return getattr(self.adapter, name)

    def write(self, collection, writes):
        if self.edit:
            self.edit()
            self.edit = None
        if self.fail_before:
            self.fail_before -= 1
            raise TransientError("connection reset before the write")
        results = self.adapter.write(collection, writes)
        self.writes += 1
        if self.crash_after:
            raise SystemExit("the process died after the write")
        if self.fail_after:
            self.fail_after -= 1
            raise TransientError("the response was lost")
        return results

    def close(self):
        pass


def test_an_update_is_written_and_recorded_with_the_targets_before_image(ledger, crm):
    with Run(ledger, "run-1", workflow="lead-sync", actor="zapier") as run:
        outcome = run.update(Target(crm, "contacts"), 1, {"stage": "sql"}, inputs={"score": 91})
    assert outcome.status == "applied"
    assert crm.read("contacts", ["1"])["1"] == {"stage": "sql", "owner": "ann"}
    action = ledger.history(contact("1"))[-1]
    assert action.delta == {"stage": ("lead", "sql")}
    assert (action.batch, action.workflow, action.inputs) == ("run-1", "lead-sync", {"score": 91})
    assert ledger.batch_view("run-1").status == "closed"


def test_a_rerun_of_the_same_batch_applies_nothing_twice(ledger, crm):
    changes = [
        Change(contact("1"), "update", values={"stage": "sql"}),
        Change(contact("2"), "update", values={"stage": "sql"}),
    ]
    first = Run(ledger, "run-1").apply(Target(crm, "contacts"), changes)
    counting = Flaky(crm)
    again = Run(ledger, "run-1").apply(Target(counting, "contacts"), changes)
    assert [o.status for o in first] == ["applied", "applied"]
    assert [o.status for o in again] == ["already_applied", "already_applied"]
    assert counting.writes == 0
    assert [a.operation for a in ledger.history(contact("1"))] == ["track", "update"]


def test_a_record_changed_back_and_forth_in_one_run_is_applied_each_time(ledger, crm):
    changes = [Change(contact("1"), "update", values={"stage": s}) for s in ("sql", "lead", "sql")]
    outcomes = Run(ledger, "run-1").apply(Target(crm, "contacts"), changes)
    assert [o.status for o in outcomes] == ["applied"] * 3
    assert [a.after for a in ledger.history(contact("1"))] == [
        {"stage": "lead", "owner": "ann"},  # first seen: the whole record, once
        {"stage": "sql"},
        {"stage": "lead"},
        {"stage": "sql"},
    ]


def test_an_expected_value_that_no_longer_holds_is_refused_before_writing(ledger, crm):
    counting = Flaky(crm)
    outcome = Run(ledger, "run-1").update(
        Target(counting, "contacts"), 1, {"stage": "sql"}, expected={"owner": "dara"}
    )
    assert (outcome.status, outcome.field, outcome.expected, outcome.actual) == (
        "stale",
        "owner",
        "dara",
        "ann",
    )
    assert counting.writes == 0
    assert crm.read("contacts", ["1"])["1"]["stage"] == "lead"


def test_an_outside_edit_between_read_and_write_is_never_overwritten(ledger, crm):
    def someone_edits():
        crm.write("contacts", [Write("1", "update", {"stage": "customer"}, expected={})])

    target = Target(Flaky(crm, edit=someone_edits), "contacts")
    outcome = Run(ledger, "run-1").update(target, 1, {"stage": "sql"})
    assert (outcome.status, outcome.field, outcome.expected, outcome.actual) == (
        "stale",
        "stage",
        "lead",
        "customer",
    )
    assert crm.read("contacts", ["1"])["1"]["stage"] == "customer"
    assert ledger.index.pending() == []


def test_stop_on_stale_stops_the_run_with_both_values(ledger, crm):
    run = Run(ledger, "run-1", stop_on_stale=True)
    with pytest.raises(
        StaleWrite, match="'owner' was expected to be 'x' but the target holds 'ann'"
    ):
        run.update(Target(crm, "contacts"), 1, {"stage": "sql"}, expected={"owner": "x"})


def test_an_outside_edit_seen_in_the_target_is_adopted_before_the_action(ledger, crm):
    target = Target(crm, "contacts")
    Run(ledger, "run-1").update(target, 1, {"stage": "sql"})
    crm.write("contacts", [Write("1", "update", {"stage": "customer"}, expected={})])
    Run(ledger, "run-2").update(target, 1, {"stage": "churned"})
    history = ledger.history(contact("1"))
    assert [(a.batch, a.actor, a.delta["stage"]) for a in history] == [
        ("observed", "external", (ABSENT, "lead")),  # first seen, whole
        ("run-1", None, ("lead", "sql")),
        ("observed", "external", ("sql", "customer")),
        ("run-2", None, ("customer", "churned")),
    ]


def test_transient_failures_are_retried_and_each_action_recorded_once(ledger, crm):
    flaky = Flaky(crm, fail_before=2, fail_after=1)
    outcome = Run(ledger, "run-1").update(Target(flaky, "contacts"), 1, {"stage": "sql"})
    assert outcome.status == "applied"
    assert flaky.writes == 2  # once landed with its response lost, once found already done
    assert [a.operation for a in ledger.history(contact("1"))] == ["track", "update"]
    assert ledger.history(contact("1"))[-1].delta == {"stage": ("lead", "sql")}


def test_a_crash_after_the_write_is_recovered_as_applied(ledger, db_url, crm):
    with pytest.raises(SystemExit):
        Run(ledger, "run-1").update(
            Target(Flaky(crm, crash_after=True), "contacts"), 1, {"stage": "sql"}
        )
    assert len(ledger.index.pending("run-1")) == 1
    (outcome,) = recover(open_ledger(db_url), {"crm": crm})
    assert outcome.status == "applied"
    assert ledger.history(contact("1"))[-1].delta == {"stage": ("lead", "sql")}
    assert ledger.index.pending() == []


def test_a_crash_before_the_write_is_recovered_as_not_applied_and_can_run_again(ledger, crm):
    class Dies(Flaky):
        def write(self, collection, writes):
            raise SystemExit("died before writing")

    with pytest.raises(SystemExit):
        Run(ledger, "run-1").update(Target(Dies(crm), "contacts"), 1, {"stage": "sql"})
    (outcome,) = recover(ledger, {"crm": crm})
    assert outcome.status == "not_applied"
    with pytest.raises(Exception, match="no recorded actions"):
        ledger.history(contact("1"))
    assert (
        Run(ledger, "run-1").update(Target(crm, "contacts"), 1, {"stage": "sql"}).status
        == "applied"
    )


def test_a_canary_batch_applies_only_its_first_actions(ledger, crm):
    changes = [Change(contact(k), "update", values={"stage": "sql"}) for k in ("1", "2")]
    with pytest.raises(CanaryLimit, match="limited to its first 1 actions; crm/contacts/2"):
        Run(ledger, "canary", limit=1).apply(Target(crm, "contacts"), changes)
    assert crm.read("contacts", ["1", "2"]) == {
        "1": {"stage": "sql", "owner": "ann"},
        "2": {"stage": "mql", "owner": "bo"},
    }


def test_creates_and_deletes_carry_what_undoes_them(ledger, crm):
    target = Target(crm, "contacts")
    run = Run(ledger, "run-1")
    assert run.create(target, 3, {"stage": "lead"}).status == "applied"
    assert run.delete(target, 2).status == "applied"
    deleted = ledger.history(contact("2"))[-1]
    assert deleted.compensation == {"operation": "create", "set": {"stage": "mql", "owner": "bo"}}
    assert run.create(target, 1, {"stage": "x"}).status == "stale"


def test_a_run_reads_like_the_automation_it_records(ledger, crm):
    from ledger import Run, System

    contacts = System(crm).contacts
    with Run(
        ledger, "lead-sync-7", workflow="lead-sync", workflow_version="3", actor="zapier"
    ) as run:
        run.update(contacts, 1, {"stage": "customer"}, inputs={"score": 91})
        run.update(contacts, 2, {"stage": "customer"}, expected={"owner": "bo"})
    assert dict(run.counts) == {"applied": 2}
    assert ledger.batch_view("lead-sync-7").status == "closed"


def test_a_closed_batch_refuses_new_changes_before_writing_anything(ledger, crm):
    from ledger.errors import BatchClosed

    with Run(ledger, "run-1") as run:
        run.update(Target(crm, "contacts"), 1, {"stage": "sql"})
    counting = Flaky(crm)
    rerun = Run(ledger, "run-1")
    assert (
        rerun.update(Target(counting, "contacts"), 1, {"stage": "sql"}).status == "already_applied"
    )
    with pytest.raises(BatchClosed, match="batch 'run-1' is closed"):
        rerun.update(Target(counting, "contacts"), 2, {"stage": "sql"})
    assert counting.writes == 0
    assert crm.read("contacts", ["2"])["2"]["stage"] == "mql"


def test_a_batch_with_refused_changes_stays_open_for_the_fixed_ones(ledger, crm):
    target = Target(crm, "contacts")
    with Run(ledger, "run-1") as run:
        run.update(target, 1, {"stage": "sql"}, expected={"owner": "nobody"})
        run.update(target, 2, {"stage": "sql"})
    assert ledger.batch_view("run-1").status == "open"
    with Run(ledger, "run-1") as run:
        assert run.update(target, 1, {"stage": "sql"}).status == "applied"
    assert ledger.batch_view("run-1").status == "closed"
