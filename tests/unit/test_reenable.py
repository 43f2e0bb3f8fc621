"""The re-enable rule judged purely: each condition met or unmet, with why."""

from datetime import UTC, datetime, timedelta

from ledger.reenable import (
    CanaryRun,
    Reconciliation,
    ReenableEvidence,
    ReenableRule,
    check_reenable,
)

PAUSED = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
AFTER = PAUSED + timedelta(minutes=30)


def judge(rule, **evidence):
    return check_reenable(
        rule, ReenableEvidence(**evidence), paused_at=PAUSED, paused_by="alice", enabler="bob"
    )


def test_an_empty_rule_always_holds():
    assert judge(ReenableRule()).holds


def test_a_canary_that_stopped_short_or_did_not_end_proves_nothing():
    rule = ReenableRule(canary=50)
    short = CanaryRun("c1", 49, completed=True, tripped=False, at=AFTER)
    unfinished = CanaryRun("c2", 50, completed=False, tripped=False, at=AFTER)
    assert judge(rule, canary=short).unmet == ("canary c1 took 49 of 50 actions",)
    assert judge(rule, canary=unfinished).unmet == (
        "canary c2 did not run to its end (50 actions)",
    )
    assert judge(rule).unmet == ("no canary run of 50 actions",)
    done = judge(rule, canary=CanaryRun("c3", 60, completed=True, tripped=False, at=AFTER))
    assert done.holds and done.met == ("canary c3 completed 60 actions with no trip",)


def test_every_listed_collection_must_reconcile_clean_after_the_pause():
    rule = ReenableRule(reconciled=("crm/contacts", "crm/deals"))
    check = judge(
        rule, reconciliations={"crm/contacts": Reconciliation("crm/contacts", 0, 10, AFTER)}
    )
    assert check.met == (f"crm/contacts reconciled clean at {AFTER}",)
    assert check.unmet == ("crm/deals has not been reconciled",)


def test_the_approver_is_someone_other_than_the_pauser_and_the_enabler():
    rule = ReenableRule(approver=True)
    assert not judge(rule, approver="alice").holds
    assert not judge(rule, approver="bob").holds
    assert judge(rule, approver="carol").met == ("approved by carol",)
