"""Deciding which side wins is pure: a drift and the rules in, steps out, no database.

The rules that make a reconciliation request sensible (an explicit policy, field rules naming
each field once, deleting unknown records only when the ledger wins, a saved plan keeping its
own options) are the library's, so every caller gets them, not only the command line."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import ABSENT, Drift, DriftReport, InvalidChange, Point, ReconcilePlan, ReconcileScope
from ledger.reconcile import (
    Adoption,
    Correction,
    Rules,
    Skipped,
    decide,
    load_plan,
)


def test_the_ledger_wins_a_record_missing_in_the_target_by_creating_it():
    drift = Drift("1", "missing_in_target", {"n": (1, ABSENT), "stage": ("lead", ABSENT)}, 3)
    assert decide(drift, Rules("ledger")) == (
        Correction("1", "create", {"n": 1, "stage": "lead"}, (), {}),
    )


def test_the_target_wins_a_record_missing_in_it_by_adopting_the_delete():
    drift = Drift("1", "missing_in_target", {"n": (1, ABSENT)}, 3)
    assert decide(drift, Rules("target")) == (Adoption("1", "delete", {}, (), {"n": 1}),)


def test_a_record_unknown_to_the_ledger_is_left_alone_unless_deleting_is_asked_for():
    drift = Drift("6", "unknown_to_ledger", {"stage": (ABSENT, "lead")})
    (skipped,) = decide(drift, Rules("ledger"))
    assert isinstance(skipped, Skipped) and skipped.key == "6"
    assert "--delete-unknown deletes it" in skipped.reason
    assert decide(drift, Rules("ledger", delete_unknown=True)) == (
        Correction("6", "delete", {}, (), {"stage": "lead"}),
    )
    assert decide(drift, Rules("target")) == (Adoption("6", "create", {"stage": "lead"}, (), {}),)


def test_field_rules_split_one_record_into_a_correction_and_an_adoption():
    drift = Drift("2", "fields", {"n": (2, 20), "note": (ABSENT, "x"), "stage": ("lead", "sql")})
    correction, adoption = decide(drift, Rules("ledger", {"n": "target"}))
    assert correction == Correction(
        "2", "update", {"stage": "lead"}, ("note",), {"note": "x", "stage": "sql"}
    )
    assert adoption == Adoption("2", "update", {"n": 20}, (), {"n": 2})


@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]),
        st.tuples(st.integers(0, 3) | st.just(ABSENT), st.integers(0, 3) | st.just(ABSENT)),
        min_size=1,
    ),
    st.sampled_from(["ledger", "target"]),
    st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(["ledger", "target"])),
)
def test_every_differing_field_goes_to_exactly_one_side(fields, policy, field_rules):
    drift = Drift("k", "fields", fields)
    steps = decide(drift, Rules(policy, field_rules))
    touched = [
        {*step.values, *step.unset} for step in steps if isinstance(step, Correction | Adoption)
    ]
    assert sorted(name for names in touched for name in names) == sorted(fields)
    assert decide(drift, Rules(policy, field_rules)) == steps  # the same in, the same out


def test_a_request_that_does_not_make_sense_is_refused_naming_the_option():
    with pytest.raises(InvalidChange, match="explicit --policy"):
        Rules.of(None)
    with pytest.raises(InvalidChange, match="policy 'newest'"):
        Rules.of("newest")
    with pytest.raises(InvalidChange, match="FIELD=ledger or FIELD=target"):
        Rules.of("ledger", {"n": "newest"})
    with pytest.raises(InvalidChange, match="--delete-unknown goes with --policy ledger"):
        Rules.of("target", delete_unknown=True)
    with pytest.raises(InvalidChange, match="drop --at"):
        Rules.of("ledger", {"n": "target"}).refuse_at(Point.parse("position:3"))
    Rules.of("ledger").refuse_at(Point.parse("position:3"))  # correcting the target may look back


def saved_plan() -> ReconcilePlan:
    report = DriftReport("crm", "contacts", None, 1, 1, {"fields": 1}, {"n": 1}, ())
    made = ReconcilePlan(
        "",
        "crm",
        "contacts",
        "ledger",
        (),
        False,
        ReconcileScope(),
        7,
        datetime(2026, 11, 28, tzinfo=UTC),
        (Correction("1", "update", {"n": 1}, (), {"n": 2}),),
        (),
        (),
        report,
    )
    return replace(made, id=made.content_id())


def test_a_saved_plan_keeps_its_own_options_and_its_own_collection():
    data = saved_plan().dumps()
    assert load_plan(data, "crm", "contacts") == saved_plan()
    with pytest.raises(InvalidChange, match=r"keeps its own.*drop --policy"):
        load_plan(data, "crm", "contacts", policy="ledger")
    with pytest.raises(InvalidChange, match="drop --tracked-only"):
        load_plan(data, "crm", "contacts", scope=ReconcileScope(tracked_only=True))
    with pytest.raises(InvalidChange, match="that plan is for crm/contacts, not crm/deals"):
        load_plan(data, "crm", "deals")
