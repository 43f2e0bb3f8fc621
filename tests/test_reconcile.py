"""Reconciliation: drift between the ledger and a target found exactly, corrected minimally under
an explicit policy, exactly once; baselines around a batch. In memory, on SQLite and PostgreSQL."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from adapters.memory import MemoryAdapter
from adapters.sql import SqlAdapter, SqlCollection
from ledger import ABSENT, Address, Change, Point, Run, Target, open_ledger
from ledger.cli import main
from ledger.errors import AdapterError, InvalidChange
from ledger.ports import Write
from ledger.reconcile import (
    Drift,
    ReconcilePlan,
    Report,
    apply,
    capture_baseline,
    compare,
    compare_baseline,
    plan,
)

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
    return list(compare(ledger, adapter, "contacts", **options))


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
    found = Report.of(compare(ledger, crm, "contacts"))
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
    found = Report.of(compare(ledger, crm, "contacts"), samples=2)
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
    made = plan(ledger, crm, "contacts", "ledger")
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
    result = apply(ledger, crm, plan(ledger, crm, "contacts", "ledger", delete_unknown=True))
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
    made = plan(ledger, crm, "contacts", "ledger")
    assert made.corrections == () and [s.key for s in made.skipped] == ["6"]
    result = apply(ledger, crm, made)
    assert "6" in crm.collections["contacts"]
    assert result.verification.counts == {"unknown_to_ledger": 1}
    apply(ledger, crm, plan(ledger, crm, "contacts", "ledger", delete_unknown=True))
    assert "6" not in crm.collections["contacts"]
    deleted = ledger.history(contact("6"))[-1]
    assert (deleted.operation, deleted.before) == ("delete", {"stage": "lead"})


def test_re_applying_a_plan_changes_nothing(ledger, crm):
    outside(crm, "2", stage="customer")
    made = plan(ledger, crm, "contacts", "ledger")
    first = apply(ledger, crm, made)
    position = ledger.recorder.max_notification_id()
    again = apply(ledger, crm, made)
    assert (first.counts, again.counts) == ({"applied": 1}, {"already_applied": 1})
    assert ledger.recorder.max_notification_id() == position
    assert ledger.batch_view(made.batch).status == "closed"


def test_a_correction_whose_target_moved_since_the_plan_is_refused_not_overwritten(ledger, crm):
    outside(crm, "2", stage="customer")
    outside(crm, "3", stage="customer")
    crm.collections["contacts"]["4"].pop("n")  # the plan expects "n" absent...
    made = plan(ledger, crm, "contacts", "ledger")
    outside(crm, "2", stage="churned")
    outside(crm, "4", n=40)  # ... someone sets it before apply
    result = apply(ledger, crm, made)
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
    made = plan(ledger, crm, "contacts", "ledger", delete_unknown=True)
    outside(crm, "6", owner="eve")  # someone starts using the record
    (outcome,) = apply(ledger, crm, made).outcomes
    assert (outcome.status, outcome.field, outcome.expected, outcome.actual) == (
        "stale",
        "owner",
        ABSENT,
        "eve",
    )
    assert crm.collections["contacts"]["6"] == {"stage": "lead", "owner": "eve"}


def test_a_record_the_ledger_acted_on_since_the_plan_is_left_alone(ledger, crm):
    outside(crm, "2", stage="customer")
    made = plan(ledger, crm, "contacts", "ledger")
    ledger.record(Change(contact("2"), "update", values={"n": 20}), batch="elsewhere")
    (outcome,) = apply(ledger, crm, made).outcomes
    assert (outcome.status, outcome.field) == ("stale", "(ledger)")
    assert crm.collections["contacts"]["2"]["stage"] == "customer"


def test_a_saved_plan_is_applied_exactly_as_made_and_refused_if_altered(ledger, crm):
    crm.collections["contacts"]["3"].pop("note")
    outside(crm, "4", n=Decimal("4.50"))
    made = plan(ledger, crm, "contacts", "ledger", at=Point.parse("position:99"))
    loaded = ReconcilePlan.loads(made.dumps())
    assert loaded == made
    assert [c.expected for c in loaded.corrections] == [{"note": ABSENT}, {"n": Decimal("4.50")}]
    assert apply(ledger, crm, loaded).counts == {"applied": 2}
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
    made = plan(ledger, crm, "contacts", "target")
    assert made.corrections == ()
    result = apply(ledger, crm, made)
    assert result.counts == {"adopted": 4}
    assert result.verification.clean
    assert ledger.state(contact("6")).fields == {"stage": "lead", "note": None}
    assert ledger.state(contact("1")).exists is False
    adopted = ledger.history(contact("2"))[-1]
    assert (adopted.actor, adopted.trigger, adopted.batch) == ("external", "observed", made.batch)
    assert adopted.delta == {"stage": ("lead", "customer")}
    assert adopted.effective_at == made.observed_at  # when the edit was seen
    assert ledger.history(contact("3"))[-1].delta == {"note": (None, ABSENT)}
    assert apply(ledger, crm, made).counts == {"already_adopted": 4}


def test_adopting_the_target_needs_the_ledger_as_it_is_now(ledger, crm):
    ledger.checkpoint("before")
    outside(crm, "2", stage="customer")
    with pytest.raises(InvalidChange, match="drop --at"):
        plan(ledger, crm, "contacts", "target", at=Point.parse("before"))


def test_field_rules_pick_the_winner_per_field(ledger, crm):
    outside(crm, "2", stage="customer", n=20)
    made = plan(ledger, crm, "contacts", "ledger", field_rules={"n": "target"})
    assert [(c.key, c.values) for c in made.corrections] == [("2", {"stage": "lead"})]
    assert [(a.key, a.values) for a in made.adoptions] == [("2", {"n": 20})]
    result = apply(ledger, crm, made)
    assert result.verification.clean
    assert crm.collections["contacts"]["2"] == {"stage": "lead", "n": 20}
    assert ledger.state(contact("2")).fields == {"stage": "lead", "n": 20}


def test_an_apply_interrupted_by_a_crash_resumes_exactly_once(ledger, crm):
    class CrashesOnWrite(MemoryAdapter):
        def write(self, collection, writes):
            raise SystemExit("the process died while writing")

    outside(crm, "2", stage="customer", n=20)
    made = plan(ledger, crm, "contacts", "ledger", field_rules={"n": "target"})
    with pytest.raises(SystemExit):
        apply(ledger, CrashesOnWrite("crm", crm.collections), made)
    assert ledger.state(contact("2")).fields["n"] == 20  # the adoption landed before the crash
    result = apply(ledger, crm, made)
    assert result.counts == {"already_adopted": 1, "applied": 1}
    assert result.verification.clean
    assert [a.batch for a in ledger.history(contact("2"))].count(made.batch) == 2


def test_a_bad_policy_or_field_rule_is_refused(ledger, crm):
    with pytest.raises(InvalidChange, match="policy 'newest'"):
        plan(ledger, crm, "contacts", "newest")
    with pytest.raises(InvalidChange, match="FIELD=ledger or FIELD=target"):
        plan(ledger, crm, "contacts", "ledger", field_rules={"n": "newest"})


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
    made = plan(ledger, adapter, "contacts", "ledger", delete_unknown=True, null_is_absent=True)
    result = apply(ledger, adapter, made)
    assert result.counts == {"applied": 4}
    assert result.verification.clean
    assert adapter.read("contacts", ["1", "2", "3", "6"]) == {
        "1": {"stage": "lead", "n": 1, "meta": 1, "note": None},
        "2": {"stage": "lead", "n": 2, "meta": 1, "note": None},
        "3": {"stage": "lead", "n": 3, "meta": 1, "note": None},
        "6": None,
    }
    assert apply(ledger, adapter, made).counts == {"already_applied": 4}


def test_sql_cannot_hold_an_absent_field_so_that_correction_fails_naming_it(sql_target):
    ledger, adapter = sql_target
    ledger.record(Change(contact("5"), "update", unset=("note",)), batch="tidy")
    (outcome,) = apply(ledger, adapter, plan(ledger, adapter, "contacts", "ledger")).outcomes
    assert outcome.status == "failed"
    assert "cannot be absent" in outcome.error and "'note'" in outcome.error


def test_policy_target_on_sql_targets_leaves_a_clean_second_comparison(sql_target):
    ledger, adapter = sql_target
    outside_sql_edits(ledger, adapter)
    result = apply(ledger, adapter, plan(ledger, adapter, "contacts", "target"))
    assert result.counts == {"adopted": 5}
    assert result.verification.clean
    assert ledger.state(contact("3")).fields["meta"] == "1"
    assert ledger.state(contact("5")).fields["note"] is None


def test_an_outside_write_between_plan_and_apply_is_refused_on_sql_targets(sql_target):
    ledger, adapter = sql_target
    edit(adapter, "UPDATE contacts SET stage = 'customer' WHERE id IN ('2', '3')")
    made = plan(ledger, adapter, "contacts", "ledger")
    edit(adapter, "UPDATE contacts SET stage = 'churned' WHERE id = '2'")
    result = apply(ledger, adapter, made)
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
    after = Report.of(compare_baseline(ledger, crm, baseline.path, batch="lead-sync"))
    assert after.clean, after.to_json()


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
    assert (clean.exit_code, clean.output) == (
        0,
        "crm/contacts: clean (3 in the ledger, 3 in the target)\n",
    )
    edit(adapter, "UPDATE contacts SET stage = 'customer' WHERE id = '2'")
    found = invoke("reconcile", "crm/contacts", "--json")
    assert found.exit_code == 2
    assert json.loads(found.output)["counts"] == {"fields": 1}
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
    assert json.loads(applied.output)["counts"] == {"applied": 1}
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
    assert json.loads(result.output)["samples"][0]["fields"] == {"n": {"ledger": 1, "target": 10}}
