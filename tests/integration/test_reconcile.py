"""Reconciliation: drift between the ledger and a target found exactly, corrected minimally under
an explicit policy, exactly once; baselines around a batch. In memory, on SQLite and PostgreSQL."""

import contextlib
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from adapters.memory import MemoryAdapter
from adapters.sql import SqlAdapter, SqlCollection
from ledger import (
    ABSENT,
    Address,
    Change,
    Drift,
    DriftReport,
    Point,
    ReconcilePlan,
    apply_reconciliation,
    capture_baseline,
    compare_baseline,
    compare_with_target,
    open_ledger,
    plan_reconciliation,
)
from ledger.cli import main
from ledger.errors import AdapterError, InvalidChange
from ledger.ports import Write
from ledger.reconcile import Rules, plan_comparison
from ledger.runs import Run, Target

SEED = {
    "1": {"stage": "lead", "n": 1},
    "2": {"stage": "lead", "n": 2},
    "3": {"stage": "mql", "n": 3, "note": None},
    "4": {"stage": "mql", "n": 4},
    "5": {"stage": "sql", "n": 5},
}


def contact(key):
    return Address("crm", "contacts", key)


def seed(ledger, adapter, records=SEED, batch="seed"):
    """Create the records through the adapter, so the ledger and the target agree."""
    with Run(ledger, batch) as run:
        for key, record in records.items():
            assert run.create(Target(adapter, "contacts"), key, record).status == "applied"


def drifts(ledger, adapter, **options):
    return list(compare_with_target(ledger, adapter, "contacts", **options))


def outside(adapter, key, **values):
    """Someone edits the target directly, outside the ledger."""
    adapter.collections["contacts"][key].update(values)


@pytest.fixture
def crm(ledger):
    adapter = MemoryAdapter("crm", {"contacts": {}})
    seed(ledger, adapter)
    return adapter


# Finding drift --------------------------------------------------------------------------


def test_a_target_that_matches_the_ledger_is_clean(ledger, crm):
    found = DriftReport.of(compare_with_target(ledger, crm, "contacts"))
    assert found.clean
    assert (found.ledger_records, found.target_records, found.counts) == (5, 5, {})


def test_every_kind_of_drift_is_found_and_nothing_else(ledger, crm):
    rows = crm.collections["contacts"]
    del rows["1"]  # missing in the target
    rows["6"] = {"stage": "lead"}  # unknown to the ledger
    outside(crm, "2", stage="customer")  # a field changed
    outside(crm, "4", n=4.0)  # a type changed: 4 and 4.0 are different values
    rows["3"].pop("note")  # null in the ledger, absent in the target
    outside(crm, "5", note=None)  # ... and a field the ledger never touched: not compared
    assert drifts(ledger, crm) == [
        Drift("1", "missing_in_target", {"n": (1, ABSENT), "stage": ("lead", ABSENT)}, 1),
        Drift("2", "fields", {"stage": ("lead", "customer")}, 1),
        Drift("3", "fields", {"note": (None, ABSENT)}, 1),
        Drift("4", "fields", {"n": (4, 4.0)}, 1),
        Drift("6", "unknown_to_ledger", {"stage": (ABSENT, "lead")}, 0),
    ]


def test_text_and_numbers_of_another_type_are_drift(ledger, crm):
    outside(crm, "1", n="1")
    outside(crm, "2", n=True)
    outside(crm, "3", n=Decimal("3"))
    assert [(d.key, d.fields) for d in drifts(ledger, crm)] == [
        ("1", {"n": (1, "1")}),
        ("2", {"n": (2, True)}),
        ("3", {"n": (3, Decimal("3"))}),
    ]


def test_a_field_the_ledger_removed_is_known_absent_and_a_null_for_it_is_drift(ledger, crm):
    ledger.record(Change(contact("1"), "update", unset=("n",)), batch="cleanup")
    outside(crm, "1", n=None)  # the target shows null where the ledger says absent
    assert drifts(ledger, crm) == [Drift("1", "fields", {"n": (ABSENT, None)}, 2)]
    assert drifts(ledger, crm, null_is_absent=True) == []


def test_fields_the_ledger_never_touched_are_compared_only_with_all_fields(ledger, crm):
    outside(crm, "5", note=None, owner="dara")
    assert drifts(ledger, crm) == []
    assert drifts(ledger, crm, all_fields=True) == [
        Drift("5", "fields", {"note": (ABSENT, None), "owner": (ABSENT, "dara")}, 1)
    ]
    assert drifts(ledger, crm, all_fields=True, null_is_absent=True) == [
        Drift("5", "fields", {"owner": (ABSENT, "dara")}, 1)
    ]


def test_a_record_first_touched_by_an_update_is_known_whole_so_every_field_is_compared(ledger):
    crm = MemoryAdapter("crm", {"contacts": {"7": {"stage": "lead", "email": "a@x", "n": 1}}})
    Run(ledger, "sync").update(Target(crm, "contacts"), "7", {"stage": "mql"})
    assert drifts(ledger, crm) == []
    outside(crm, "7", email="b@x")
    assert drifts(ledger, crm) == [Drift("7", "fields", {"email": ("a@x", "b@x")}, 2)]
    outside(crm, "7", stage="sql")
    assert drifts(ledger, crm) == [
        Drift("7", "fields", {"email": ("a@x", "b@x"), "stage": ("mql", "sql")}, 2)
    ]


def test_tracked_only_leaves_out_records_the_ledger_never_saw_but_not_deleted_ones(ledger, crm):
    Run(ledger, "tidy").delete(Target(crm, "contacts"), "5")
    crm.collections["contacts"]["5"] = {"stage": "sql"}  # someone puts it back
    crm.collections["contacts"]["6"] = {"stage": "lead"}
    assert [(d.key, d.kind, d.ledger_version) for d in drifts(ledger, crm)] == [
        ("5", "unknown_to_ledger", 2),
        ("6", "unknown_to_ledger", 0),
    ]
    assert [d.key for d in drifts(ledger, crm, tracked_only=True)] == ["5"]


def test_the_ledger_can_be_compared_as_it_was_at_a_checkpoint(ledger, crm):
    ledger.checkpoint("before")
    Run(ledger, "sync").update(Target(crm, "contacts"), "1", {"stage": "mql"})
    assert drifts(ledger, crm) == []
    assert drifts(ledger, crm, at=Point.parse("before")) == [
        Drift("1", "fields", {"stage": ("lead", "mql")}, 1)
    ]


def test_a_report_counts_every_drift_and_keeps_only_a_few_samples(ledger, crm):
    for key in "12345":
        outside(crm, key, stage="customer")
    crm.collections["contacts"]["9"] = {"stage": "x"}
    found = DriftReport.of(compare_with_target(ledger, crm, "contacts"), samples=2)
    assert found.counts == {"unknown_to_ledger": 1, "fields": 5}
    assert found.field_counts == {"stage": 5}
    assert [d.key for d in found.samples] == ["1", "2"]
    assert not found.clean
    shown = found.to_json()
    assert shown["samples_truncated"] and shown["drifted"] == 6
    assert shown["samples"][0]["fields"] == {"stage": {"ledger": "lead", "target": "customer"}}


def test_drift_as_json_leaves_out_the_absent_side(ledger, crm):
    crm.collections["contacts"]["3"].pop("note")
    (drift,) = drifts(ledger, crm)
    assert drift.to_json()["fields"] == {"note": {"ledger": None}}


def test_an_adapter_that_scans_out_of_key_order_is_refused(ledger, crm):
    class Unordered(MemoryAdapter):
        def scan(self, collection):
            return reversed(list(super().scan(collection)))

    backwards = Unordered("crm", crm.collections)
    with pytest.raises(AdapterError, match="key-text order"):
        drifts(ledger, backwards)


# Correcting: the ledger wins ------------------------------------------------------------


def test_policy_ledger_plans_only_the_differing_fields_expecting_the_targets_values(ledger, crm):
    outside(crm, "2", stage="customer", note="hi")
    crm.collections["contacts"]["3"].pop("note")
    del crm.collections["contacts"]["1"]
    made = plan_reconciliation(ledger, crm, "contacts", "ledger")
    assert [(c.key, c.operation, c.values, c.unset, c.expected) for c in made.corrections] == [
        ("1", "create", {"stage": "lead", "n": 1}, (), {}),
        ("2", "update", {"stage": "lead"}, (), {"stage": "customer"}),
        ("3", "update", {"note": None}, (), {"note": ABSENT}),
    ]
    assert made.adoptions == ()
    assert crm.collections["contacts"]["2"]["stage"] == "customer"  # planning changes nothing


def test_policy_ledger_corrections_leave_a_clean_second_comparison(ledger, crm):
    del crm.collections["contacts"]["1"]
    crm.collections["contacts"]["6"] = {"stage": "lead"}
    outside(crm, "2", stage="customer", email="kept@x")
    outside(crm, "4", n=4.0)
    crm.collections["contacts"]["3"].pop("note")
    result = apply_reconciliation(
        ledger, crm, plan_reconciliation(ledger, crm, "contacts", "ledger", delete_unknown=True)
    )
    assert result.counts == {"applied": 5}
    assert result.verification.clean
    assert crm.collections["contacts"] == {
        "1": {"stage": "lead", "n": 1},
        "2": {"stage": "lead", "n": 2, "email": "kept@x"},  # only the differing field written
        "3": {"stage": "mql", "n": 3, "note": None},
        "4": {"stage": "mql", "n": 4},
        "5": {"stage": "sql", "n": 5},
    }
    history = ledger.history(contact("2"))
    assert [(a.actor, a.trigger, a.delta) for a in history[1:]] == [
        # history explains the outside edit, the whole of it
        ("external", "observed", {"email": (ABSENT, "kept@x"), "stage": ("lead", "customer")}),
        ("reconcile", "reconcile", {"stage": ("customer", "lead")}),
    ]


def test_records_unknown_to_the_ledger_are_kept_unless_delete_unknown(ledger, crm):
    crm.collections["contacts"]["6"] = {"stage": "lead"}
    made = plan_reconciliation(ledger, crm, "contacts", "ledger")
    assert made.corrections == () and [s.key for s in made.skipped] == ["6"]
    result = apply_reconciliation(ledger, crm, made)
    assert "6" in crm.collections["contacts"]
    assert result.verification.counts == {"unknown_to_ledger": 1}
    apply_reconciliation(
        ledger, crm, plan_reconciliation(ledger, crm, "contacts", "ledger", delete_unknown=True)
    )
    assert "6" not in crm.collections["contacts"]
    deleted = ledger.history(contact("6"))[-1]
    assert (deleted.operation, deleted.before) == ("delete", {"stage": "lead"})


def test_re_applying_a_plan_changes_nothing(ledger, crm):
    outside(crm, "2", stage="customer")
    made = plan_reconciliation(ledger, crm, "contacts", "ledger")
    first = apply_reconciliation(ledger, crm, made)
    position = ledger.recorder.max_notification_id()
    again = apply_reconciliation(ledger, crm, made)
    assert (first.counts, again.counts) == ({"applied": 1}, {"already_applied": 1})
    # Nothing is recorded twice: the one new event is the check made again (lane evidence).
    new = ledger.recorder.select_notifications(position + 1, 10)
    assert [n.topic.rsplit(":", 1)[1] for n in new] == ["ReconciliationLog.Checked"]
    assert ledger.batch_view(made.batch).status == "closed"


def test_a_correction_whose_target_moved_since_the_plan_is_refused_not_overwritten(ledger, crm):
    outside(crm, "2", stage="customer")
    outside(crm, "3", stage="customer")
    crm.collections["contacts"]["4"].pop("n")  # the plan expects "n" absent...
    made = plan_reconciliation(ledger, crm, "contacts", "ledger")
    outside(crm, "2", stage="churned")
    outside(crm, "4", n=40)  # ... someone sets it before apply
    result = apply_reconciliation(ledger, crm, made)
    assert [(o.entity, o.status, o.field, o.expected, o.actual) for o in result.refused] == [
        ("crm/contacts/2", "stale", "stage", "customer", "churned"),
        ("crm/contacts/4", "stale", "n", ABSENT, 40),
    ]
    assert crm.collections["contacts"]["2"]["stage"] == "churned"
    assert crm.collections["contacts"]["4"]["n"] == 40
    assert crm.collections["contacts"]["3"]["stage"] == "mql"  # the unmoved one is corrected
    assert result.verification.counts == {"fields": 2}
    assert ledger.batch_view(made.batch).status == "open"


def test_a_delete_expects_the_whole_record_the_plan_saw(ledger, crm):
    crm.collections["contacts"]["6"] = {"stage": "lead"}
    made = plan_reconciliation(ledger, crm, "contacts", "ledger", delete_unknown=True)
    outside(crm, "6", owner="eve")  # someone starts using the record
    (outcome,) = apply_reconciliation(ledger, crm, made).outcomes
    assert (outcome.status, outcome.field, outcome.expected, outcome.actual) == (
        "stale",
        "owner",
        ABSENT,
        "eve",
    )
    assert crm.collections["contacts"]["6"] == {"stage": "lead", "owner": "eve"}


def test_a_record_the_ledger_acted_on_since_the_plan_is_left_alone(ledger, crm):
    outside(crm, "2", stage="customer")
    made = plan_reconciliation(ledger, crm, "contacts", "ledger")
    ledger.record(Change(contact("2"), "update", values={"n": 20}), batch="elsewhere")
    (outcome,) = apply_reconciliation(ledger, crm, made).outcomes
    assert (outcome.status, outcome.field) == ("stale", "(ledger)")
    assert crm.collections["contacts"]["2"]["stage"] == "customer"


def test_a_saved_plan_is_applied_exactly_as_made_and_refused_if_altered(ledger, crm):
    crm.collections["contacts"]["3"].pop("note")
    outside(crm, "4", n=Decimal("4.50"))
    made = plan_reconciliation(ledger, crm, "contacts", "ledger", at=Point.parse("position:99"))
    loaded = ReconcilePlan.loads(made.dumps())
    assert loaded == made
    assert [c.expected for c in loaded.corrections] == [{"note": ABSENT}, {"n": Decimal("4.50")}]
    assert apply_reconciliation(ledger, crm, loaded).counts == {"applied": 2}
    altered = made.dumps().replace(b'"values":{"n":4}', b'"values":{"n":5}')
    assert altered != made.dumps()
    with pytest.raises(InvalidChange, match="altered"):
        ReconcilePlan.loads(altered)
    with pytest.raises(InvalidChange, match="not a plan"):
        ReconcilePlan.loads(b"{}")


# Correcting: the target wins ------------------------------------------------------------


def test_policy_target_adopts_the_drift_as_observed_changes_and_is_then_clean(ledger, crm):
    del crm.collections["contacts"]["1"]
    crm.collections["contacts"]["6"] = {"stage": "lead", "note": None}
    outside(crm, "2", stage="customer")
    crm.collections["contacts"]["3"].pop("note")
    made = plan_reconciliation(ledger, crm, "contacts", "target")
    assert made.corrections == ()
    result = apply_reconciliation(ledger, crm, made)
    assert result.counts == {"adopted": 4}
    assert result.verification.clean
    assert ledger.state(contact("6")).fields == {"stage": "lead", "note": None}
    assert ledger.state(contact("1")).exists is False
    adopted = ledger.history(contact("2"))[-1]
    assert (adopted.actor, adopted.trigger, adopted.batch) == ("external", "observed", made.batch)
    assert adopted.delta == {"stage": ("lead", "customer")}
    assert adopted.effective_at == made.observed_at  # when the edit was seen
    assert ledger.history(contact("3"))[-1].delta == {"note": (None, ABSENT)}
    assert apply_reconciliation(ledger, crm, made).counts == {"already_adopted": 4}


def test_adopting_the_target_needs_the_ledger_as_it_is_now(ledger, crm):
    ledger.checkpoint("before")
    outside(crm, "2", stage="customer")
    with pytest.raises(InvalidChange, match="drop --at"):
        plan_reconciliation(ledger, crm, "contacts", "target", at=Point.parse("before"))


def test_field_rules_pick_the_winner_per_field(ledger, crm):
    outside(crm, "2", stage="customer", n=20)
    made = plan_reconciliation(ledger, crm, "contacts", "ledger", field_rules={"n": "target"})
    assert [(c.key, c.values) for c in made.corrections] == [("2", {"stage": "lead"})]
    assert [(a.key, a.values) for a in made.adoptions] == [("2", {"n": 20})]
    result = apply_reconciliation(ledger, crm, made)
    assert result.verification.clean
    assert crm.collections["contacts"]["2"] == {"stage": "lead", "n": 20}
    assert ledger.state(contact("2")).fields == {"stage": "lead", "n": 20}


def test_an_apply_interrupted_by_a_crash_resumes_exactly_once(ledger, crm):
    class CrashesOnWrite(MemoryAdapter):
        def write(self, collection, writes):
            raise SystemExit("the process died while writing")

    outside(crm, "2", stage="customer", n=20)
    made = plan_reconciliation(ledger, crm, "contacts", "ledger", field_rules={"n": "target"})
    with pytest.raises(SystemExit):
        apply_reconciliation(ledger, CrashesOnWrite("crm", crm.collections), made)
    assert ledger.state(contact("2")).fields["n"] == 20  # the adoption landed before the crash
    result = apply_reconciliation(ledger, crm, made)
    assert result.counts == {"already_adopted": 1, "applied": 1}
    assert result.verification.clean
    assert [a.batch for a in ledger.history(contact("2"))].count(made.batch) == 2


def test_a_bad_policy_or_field_rule_is_refused(ledger, crm):
    with pytest.raises(InvalidChange, match="policy 'newest'"):
        plan_reconciliation(ledger, crm, "contacts", "newest")
    with pytest.raises(InvalidChange, match="FIELD=ledger or FIELD=target"):
        plan_reconciliation(ledger, crm, "contacts", "ledger", field_rules={"n": "newest"})


# SQL targets (SQLite and PostgreSQL) ----------------------------------------------------


def sql_crm(url):
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    sa.Table(
        "contacts",
        metadata,
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("stage", sa.String),
        sa.Column("n", sa.Integer),
        sa.Column("meta", sa.JSON),
        sa.Column("note", sa.String, nullable=True),
    )
    metadata.create_all(engine)
    engine.dispose()
    return SqlAdapter("crm", url, {"contacts": SqlCollection("contacts")})


def edit(adapter, statement, **params):
    with adapter.engine.begin() as connection:
        connection.execute(sa.text(statement), params)


@pytest.fixture
def sql_target(sql_url, tmp_path):
    """A SQL CRM whose five contacts were created through the ledger (``note`` set on 5 only)."""
    ledger = open_ledger(str(tmp_path / "ledger.db"))
    adapter = sql_crm(sql_url)
    records = {k: {"stage": "lead", "n": int(k), "meta": 1} for k in "12345"}
    records["5"]["note"] = "n5"
    seed(ledger, adapter, records)
    yield ledger, adapter
    adapter.close()
    ledger.close()


def outside_sql_edits(ledger, adapter):
    ledger.record(Change(contact("5"), "update", unset=("note",)), batch="tidy")
    edit(adapter, "UPDATE contacts SET note = NULL WHERE id = '5'")  # SQL's nearest to absent
    edit(adapter, "DELETE FROM contacts WHERE id = '1'")
    edit(adapter, "INSERT INTO contacts (id, stage, n) VALUES ('6', 'lead', 6)")
    edit(adapter, "UPDATE contacts SET stage = 'customer' WHERE id = '2'")
    edit(adapter, "UPDATE contacts SET meta = :meta WHERE id = '3'", meta='"1"')  # JSON "1"
    edit(adapter, "UPDATE contacts SET note = 'untracked' WHERE id = '4'")


def test_every_kind_of_drift_is_found_on_sql_targets_and_nothing_else(sql_target):
    ledger, adapter = sql_target
    assert drifts(ledger, adapter) == []
    outside_sql_edits(ledger, adapter)
    assert drifts(ledger, adapter) == [
        Drift(
            "1",
            "missing_in_target",
            {"stage": ("lead", ABSENT), "n": (1, ABSENT), "meta": (1, ABSENT)},
            1,
        ),
        Drift("2", "fields", {"stage": ("lead", "customer")}, 1),
        Drift("3", "fields", {"meta": (1, "1")}, 1),
        Drift("5", "fields", {"note": (ABSENT, None)}, 2),  # the ledger removed it; SQL has null
        Drift(
            "6",
            "unknown_to_ledger",
            {
                "stage": (ABSENT, "lead"),
                "n": (ABSENT, 6),
                "meta": (ABSENT, None),
                "note": (ABSENT, None),
            },
            0,
        ),
    ]
    assert [d.key for d in drifts(ledger, adapter, null_is_absent=True)] == ["1", "2", "3", "6"]


def test_with_all_fields_a_column_the_ledger_never_set_is_null_versus_absent(sql_target):
    ledger, adapter = sql_target
    found = drifts(ledger, adapter, all_fields=True)
    assert [(d.key, d.fields) for d in found] == [(k, {"note": (ABSENT, None)}) for k in "1234"]
    assert drifts(ledger, adapter, all_fields=True, null_is_absent=True) == []


def test_policy_ledger_on_sql_targets_leaves_a_clean_second_comparison(sql_target):
    ledger, adapter = sql_target
    outside_sql_edits(ledger, adapter)
    made = plan_reconciliation(
        ledger, adapter, "contacts", "ledger", delete_unknown=True, null_is_absent=True
    )
    result = apply_reconciliation(ledger, adapter, made)
    assert result.counts == {"applied": 4}
    assert result.verification.clean
    assert adapter.read("contacts", ["1", "2", "3", "6"]) == {
        "1": {"stage": "lead", "n": 1, "meta": 1, "note": None},
        "2": {"stage": "lead", "n": 2, "meta": 1, "note": None},
        "3": {"stage": "lead", "n": 3, "meta": 1, "note": None},
        "6": None,
    }
    assert apply_reconciliation(ledger, adapter, made).counts == {"already_applied": 4}


def test_sql_cannot_hold_an_absent_field_so_that_correction_fails_naming_it(sql_target):
    ledger, adapter = sql_target
    ledger.record(Change(contact("5"), "update", unset=("note",)), batch="tidy")
    (outcome,) = apply_reconciliation(
        ledger, adapter, plan_reconciliation(ledger, adapter, "contacts", "ledger")
    ).outcomes
    assert outcome.status == "failed"
    assert "cannot be absent" in outcome.error and "'note'" in outcome.error


def test_policy_target_on_sql_targets_leaves_a_clean_second_comparison(sql_target):
    ledger, adapter = sql_target
    outside_sql_edits(ledger, adapter)
    result = apply_reconciliation(
        ledger, adapter, plan_reconciliation(ledger, adapter, "contacts", "target")
    )
    assert result.counts == {"adopted": 5}
    assert result.verification.clean
    assert ledger.state(contact("3")).fields["meta"] == "1"
    assert ledger.state(contact("5")).fields["note"] is None


def test_an_outside_write_between_plan_and_apply_is_refused_on_sql_targets(sql_target):
    ledger, adapter = sql_target
    edit(adapter, "UPDATE contacts SET stage = 'customer' WHERE id IN ('2', '3')")
    made = plan_reconciliation(ledger, adapter, "contacts", "ledger")
    edit(adapter, "UPDATE contacts SET stage = 'churned' WHERE id = '2'")
    result = apply_reconciliation(ledger, adapter, made)
    assert [(o.entity, o.status, o.actual) for o in result.outcomes] == [
        ("crm/contacts/2", "stale", "churned"),
        ("crm/contacts/3", "applied", None),
    ]
    assert adapter.read("contacts", ["2"])["2"]["stage"] == "churned"


# Baselines ------------------------------------------------------------------------------


def test_a_batch_that_did_what_its_actions_say_matches_its_baseline(ledger, crm, tmp_path):
    baseline = capture_baseline(ledger, crm, "contacts", tmp_path / "before.jsonl")
    assert baseline.records == 5
    with Run(ledger, "lead-sync") as run:
        run.update(Target(crm, "contacts"), "1", {"stage": "mql"})
        run.create(Target(crm, "contacts"), "7", {"stage": "lead"})
        run.delete(Target(crm, "contacts"), "5")
    after = DriftReport.of(compare_baseline(ledger, crm, baseline.path, batch="lead-sync"))
    assert after.clean, after.to_json()


def test_a_baseline_is_checked_only_as_the_collection_it_was_taken_of(ledger, crm, tmp_path):
    crm.collections["deals"] = {}
    baseline = capture_baseline(ledger, crm, "contacts", tmp_path / "before.jsonl")
    with pytest.raises(InvalidChange, match="is a baseline of crm/contacts, not crm/deals"):
        compare_baseline(ledger, crm, baseline.path, collection="deals")
    assert DriftReport.of(compare_baseline(ledger, crm, baseline.path, collection="contacts")).clean


def test_a_baseline_comparison_is_not_a_plans_start(ledger, crm, tmp_path):
    baseline = capture_baseline(ledger, crm, "contacts", tmp_path / "before.jsonl")
    with pytest.raises(InvalidChange, match="plan against the ledger"):
        plan_comparison(compare_baseline(ledger, crm, baseline.path), Rules("ledger"))


def test_anything_a_batch_did_not_record_is_reported_against_the_baseline(ledger, crm, tmp_path):
    capture_baseline(ledger, crm, "contacts", tmp_path / "before.jsonl")
    outside(crm, "2", stage="edited-before-the-batch")  # then overwritten by the batch
    with Run(ledger, "lead-sync") as run:
        crm.write("contacts", [Write("2", "update", {"stage": "x"}, expected={})])
        run.update(Target(crm, "contacts"), "2", {"stage": "mql"})
        run.update(Target(crm, "contacts"), "3", {"stage": "sql"})
    outside(crm, "3", n=30)  # a field the batch did not touch
    crm.collections["contacts"]["8"] = {"stage": "lead"}  # a record nobody recorded
    found = list(compare_baseline(ledger, crm, tmp_path / "before.jsonl", batch="lead-sync"))
    assert found == [
        Drift("2", "before_differs", {"stage": ("lead", "x")}, 3),
        Drift("3", "fields", {"n": (3, 30)}, 2),
        Drift("8", "unknown_to_ledger", {"stage": (ABSENT, "lead")}, 0),
    ]
    # Without --batch, the observed edit the run recorded explains record 2's first change.
    everything = list(compare_baseline(ledger, crm, tmp_path / "before.jsonl"))
    assert [(d.key, d.kind) for d in everything] == [("3", "fields"), ("8", "unknown_to_ledger")]


def test_a_baseline_keeps_values_exactly(ledger, tmp_path):
    odd = {
        "d": Decimal("1.10"),
        "t": datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
        "b": b"\x00",
        "big": 2**70,
        "nested": {"_type_": "x", "_data_": 1},
        "n": None,
    }
    crm = MemoryAdapter("crm", {"contacts": {"1": odd}})
    path = tmp_path / "b.jsonl"
    capture_baseline(ledger, crm, "contacts", path)
    assert list(compare_baseline(ledger, crm, path)) == []
    outside(crm, "1", d=Decimal("1.2"))
    assert list(compare_baseline(ledger, crm, path)) == [
        Drift("1", "fields", {"d": (Decimal("1.10"), Decimal("1.2"))}, 0)
    ]
    (tmp_path / "other.jsonl").write_text('{"entity": "crm/contacts/1"}\n')
    with pytest.raises(InvalidChange, match="not a baseline"):
        compare_baseline(ledger, crm, tmp_path / "other.jsonl")


def test_a_batch_on_a_sql_target_is_checked_against_its_baseline(sql_target, tmp_path):
    ledger, adapter = sql_target
    path = tmp_path / "before.jsonl"
    capture_baseline(ledger, adapter, "contacts", path)
    with Run(ledger, "lead-sync") as run:
        run.update(Target(adapter, "contacts"), "1", {"stage": "mql"})
        run.create(Target(adapter, "contacts"), "9", {"stage": "lead"})  # other columns NULL
    assert list(compare_baseline(ledger, adapter, path, batch="lead-sync")) == []
    edit(adapter, "UPDATE contacts SET note = 'x' WHERE id = '4'")
    assert list(compare_baseline(ledger, adapter, path, batch="lead-sync")) == [
        Drift("4", "fields", {"note": (None, "x")}, 0)
    ]


# The command ----------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path):
    crm = tmp_path / "crm.db"
    adapter = sql_crm(f"sqlite:///{crm}")
    config = tmp_path / "ledger.toml"
    config.write_text(
        f'[systems.crm]\ntype = "sql"\nurl = "sqlite:///{crm}"\n'
        'collections.contacts = { table = "contacts", key = ["id"] }\n'
    )
    db = str(tmp_path / "ledger.db")
    ledger = open_ledger(db)
    seed(ledger, adapter, {k: {"stage": "lead", "n": int(k)} for k in "123"})
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [*args, "--db", db, "--config", str(config)])

    yield invoke, adapter
    adapter.close()


def test_the_command_exits_0_when_clean_2_on_drift_and_1_on_error(cli):
    invoke, adapter = cli
    clean = invoke("reconcile", "crm/contacts")
    assert (clean.exit_code, clean.stdout) == (
        0,
        "crm/contacts: clean (3 in the ledger, 3 in the target)\n",
    )
    edit(adapter, "UPDATE contacts SET stage = 'customer' WHERE id = '2'")
    found = invoke("reconcile", "crm/contacts", "--json")
    assert found.exit_code == 2
    assert json.loads(found.stdout)["counts"] == {"fields": 1}
    assert invoke("reconcile", "crm/contacts", "--at", "no-such-checkpoint").exit_code == 1
    assert invoke("reconcile", "crm/contacts", "--apply").exit_code == 1  # no policy
    assert invoke("reconcile", "crm/contacts", "--no-such-option").exit_code == 1
    assert invoke("reconcile", "erp/contacts").exit_code == 1


def test_the_command_plans_then_applies_and_verifies(cli, tmp_path):
    invoke, adapter = cli
    edit(adapter, "UPDATE contacts SET stage = 'customer' WHERE id = '2'")
    planned = invoke("reconcile", "crm/contacts", "--plan", "--policy", "ledger")
    assert planned.exit_code == 2
    assert "1 correction(s) to the target" in planned.output
    assert (
        "customer" in planned.output and adapter.read("contacts", ["2"])["2"]["stage"] == "customer"
    )
    saved = tmp_path / "plan.bin"
    invoke("reconcile", "crm/contacts", "--plan", "--policy", "ledger", "--out", str(saved))
    applied = invoke("reconcile", "crm/contacts", "--apply", "--from", str(saved), "--json")
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.stdout)["counts"] == {"applied": 1}
    assert adapter.read("contacts", ["2"])["2"]["stage"] == "lead"
    assert invoke("reconcile", "crm/contacts").exit_code == 0


def test_the_command_exits_2_when_drift_is_left_after_applying(cli):
    invoke, adapter = cli
    edit(adapter, "INSERT INTO contacts (id, stage) VALUES ('9', 'lead')")
    result = invoke("reconcile", "crm/contacts", "--apply", "--policy", "ledger")
    assert result.exit_code == 2
    assert "1 left alone (9): unknown to the ledger" in result.output
    adopt = invoke("reconcile", "crm/contacts", "--apply", "--policy", "target")
    assert adopt.exit_code == 0, adopt.output


def test_the_command_checks_a_batch_against_a_baseline(cli, tmp_path):
    invoke, adapter = cli
    path = tmp_path / "before.jsonl"
    assert invoke("reconcile", "crm/contacts", "--capture-baseline", str(path)).exit_code == 0
    assert invoke("reconcile", "crm/contacts", "--baseline", str(path)).exit_code == 0
    edit(adapter, "UPDATE contacts SET n = 10 WHERE id = '1'")
    result = invoke("reconcile", "crm/contacts", "--baseline", str(path), "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["samples"][0]["fields"] == {"n": {"ledger": 1, "target": 10}}


# The command's grammar: check, plan, apply, baseline capture|check ----------------------


def test_the_subcommands_check_plan_and_apply_with_a_saved_plan(cli, tmp_path):
    invoke, adapter = cli
    clean = invoke("reconcile", "check", "crm/contacts")
    assert (clean.exit_code, clean.stdout, clean.stderr) == (
        0,
        "crm/contacts: clean (3 in the ledger, 3 in the target)\n",
        "",
    )
    edit(adapter, "UPDATE contacts SET stage = 'customer' WHERE id = '2'")
    found = invoke("reconcile", "check", "crm/contacts", "--json")
    assert (found.exit_code, json.loads(found.stdout)["counts"]) == (2, {"fields": 1})
    saved = tmp_path / "fix.plan"
    planned = invoke("reconcile", "plan", "crm/contacts", "--policy", "ledger", "--out", str(saved))
    assert planned.exit_code == 2 and "1 correction(s) to the target" in planned.stdout
    assert adapter.read("contacts", ["2"])["2"]["stage"] == "customer"  # planning wrote nothing
    refused = invoke(
        "reconcile", "apply", "crm/contacts", "--from", str(saved), "--policy", "target"
    )
    assert refused.exit_code == 1
    assert "a saved plan keeps its own --policy" in refused.output
    assert "drop --policy" in refused.output
    assert adapter.read("contacts", ["2"])["2"]["stage"] == "customer"  # nothing written
    elsewhere = invoke("reconcile", "apply", "crm/deals", "--from", str(saved))
    assert elsewhere.exit_code == 1
    assert "that plan is for crm/contacts, not crm/deals" in elsewhere.output
    applied = invoke("reconcile", "apply", "crm/contacts", "--from", str(saved), "--json")
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.stdout)["counts"] == {"applied": 1}
    assert adapter.read("contacts", ["2"])["2"]["stage"] == "lead"
    assert invoke("reconcile", "check", "crm/contacts").exit_code == 0


def test_the_subcommands_refuse_a_request_without_an_explicit_policy(cli):
    invoke, adapter = cli
    edit(adapter, "UPDATE contacts SET stage = 'customer' WHERE id = '2'")
    for verb in ("plan", "apply"):
        result = invoke("reconcile", verb, "crm/contacts")
        assert result.exit_code == 1
        assert "needs an explicit --policy: ledger (correct the target)" in result.output
    adopt = invoke("reconcile", "apply", "crm/contacts", "--policy", "target", "--delete-unknown")
    assert adopt.exit_code == 1 and "--delete-unknown goes with --policy ledger" in adopt.output
    assert adapter.read("contacts", ["2"])["2"]["stage"] == "customer"


def test_the_baseline_subcommands_capture_before_and_check_after(cli, tmp_path):
    invoke, adapter = cli
    path = tmp_path / "before.jsonl"
    taken = invoke("reconcile", "baseline", "capture", "crm/contacts", str(path))
    assert taken.exit_code == 0 and "baseline" in taken.stdout and path.exists()
    assert invoke("reconcile", "baseline", "check", "crm/contacts", str(path)).exit_code == 0
    edit(adapter, "UPDATE contacts SET n = 10 WHERE id = '1'")
    result = invoke("reconcile", "baseline", "check", "crm/contacts", str(path), "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["samples"][0]["fields"] == {"n": {"ledger": 1, "target": 10}}
    other = invoke("reconcile", "baseline", "check", "crm/deals", str(path))
    assert other.exit_code == 1
    assert "is a baseline of crm/contacts, not crm/deals" in other.output


# The old spelling: the same outcome and exit code, with a note naming the new spelling ---

OLD_AND_NEW = [
    # (what, old spelling, new spelling, a change made first)
    ("clean", ["crm/contacts"], ["check", "crm/contacts"], None),
    ("drift", ["crm/contacts"], ["check", "crm/contacts"], "stage"),
    (
        "plan",
        ["crm/contacts", "--plan", "--policy", "ledger"],
        ["plan", "crm/contacts", "--policy", "ledger"],
        "stage",
    ),
    (
        "apply",
        ["crm/contacts", "--apply", "--policy", "ledger"],
        ["apply", "crm/contacts", "--policy", "ledger"],
        "stage",
    ),
    (
        "apply left for review",
        ["crm/contacts", "--apply", "--policy", "ledger"],
        ["apply", "crm/contacts", "--policy", "ledger"],
        "insert",
    ),
    ("no policy", ["crm/contacts", "--apply"], ["apply", "crm/contacts"], None),
    ("unknown system", ["erp/contacts"], ["check", "erp/contacts"], None),
    (
        "bad point",
        ["crm/contacts", "--at", "nope"],
        ["check", "crm/contacts", "--at", "nope"],
        None,
    ),
]


@pytest.mark.parametrize(
    "old, new, change", [case[1:] for case in OLD_AND_NEW], ids=[case[0] for case in OLD_AND_NEW]
)
def test_the_old_spelling_does_what_the_subcommand_does_with_a_note_on_stderr(
    tmp_path, old, new, change
):
    results = []
    for spelling, args in (("old", old), ("new", new)):
        crm = tmp_path / spelling / "crm.db"
        crm.parent.mkdir()
        adapter = sql_crm(f"sqlite:///{crm}")
        config = crm.parent / "ledger.toml"
        config.write_text(
            f'[systems.crm]\ntype = "sql"\nurl = "sqlite:///{crm}"\n'
            'collections.contacts = { table = "contacts", key = ["id"] }\n'
        )
        db = str(crm.parent / "ledger.db")
        with contextlib.closing(open_ledger(db)) as ledger:
            seed(ledger, adapter, {k: {"stage": "lead", "n": int(k)} for k in "123"})
        if change == "stage":
            edit(adapter, "UPDATE contacts SET stage = 'customer' WHERE id = '2'")
        elif change == "insert":
            edit(adapter, "INSERT INTO contacts (id, stage) VALUES ('9', 'lead')")
        result = CliRunner().invoke(main, ["reconcile", *args, "--db", db, "--config", str(config)])
        results.append(result)
        adapter.close()
    before, after = results
    assert before.exit_code == after.exit_code, (before.output, after.output)
    assert before.stdout == after.stdout
    assert after.stderr == "" or after.exit_code == 1
    note = before.stderr.splitlines()[0]
    assert note.startswith("note: `ledger reconcile ")
    assert (
        f"is the old spelling, removed in the next release: use `ledger reconcile {new[0]} " in note
    )


def test_the_old_spelling_names_the_new_one_for_baselines_and_keeps_its_usage_line(cli, tmp_path):
    invoke, _ = cli
    path = tmp_path / "before.jsonl"
    taken = invoke("reconcile", "crm/contacts", "--capture-baseline", str(path))
    assert taken.stderr.startswith(
        f"note: `ledger reconcile crm/contacts --capture-baseline` is the old spelling, removed in "
        f"the next release: use `ledger reconcile baseline capture crm/contacts {path}`"
    )
    checked = invoke("reconcile", "crm/contacts", "--baseline", str(path), "--batch", "b")
    assert f"use `ledger reconcile baseline check crm/contacts {path} --batch b`" in checked.stderr
    elsewhere = invoke("reconcile", "crm/deals", "--baseline", str(path))
    assert elsewhere.exit_code == 1  # it used to check crm/contacts, as the file said
    assert "is a baseline of crm/contacts, not crm/deals" in elsewhere.output
    mistaken = invoke("reconcile", "crm/contacts", "--no-such-option")
    assert "Usage: main reconcile [OPTIONS] SYSTEM/COLLECTION\n" in mistaken.output
    assert "note:" not in mistaken.output  # a usage mistake is only that
    assert invoke("reconcile", "crm/contacts", "--batch", "b").exit_code == 1  # its own grammar


def test_options_given_with_a_saved_plan_are_refused_not_ignored(cli, tmp_path):
    invoke, adapter = cli
    edit(adapter, "UPDATE contacts SET stage = 'customer' WHERE id = '2'")
    saved = str(tmp_path / "fix.plan")
    invoke("reconcile", "crm/contacts", "--plan", "--policy", "ledger", "--out", saved)
    for option in ("--tracked-only", "--all-fields", "--null-is-absent"):
        result = invoke("reconcile", "crm/contacts", "--apply", "--from", saved, option)
        assert result.exit_code == 1  # the plan's own scope was silently used before
        assert "a saved plan keeps its own --policy, --field-rule and --at" in result.output
        assert f"drop {option}" in result.output
    assert adapter.read("contacts", ["2"])["2"]["stage"] == "customer"
