"""Property: after any interleaving of batches and outside edits, rolling back batch X (or two
batches) restores each field X changed to what it held just before X first touched it, on the
records the policy lets it restore, and leaves every other record exactly as it is:

- ``skip`` is record-level: a record anyone else changed after X first acted on it (a later
  batch, or an outside edit, in any field) is a conflict, listed and left exactly as it is;
- ``fields`` merges: it restores X's fields nobody else changed after X first touched each, and
  keeps the rest; only a record with such a field is a conflict;
- ``abort`` changes nothing at all if any record is a conflict (as under ``skip``).

The ledger creates the records first, so it knows every field and can see drift in any of them.
An outside edit made before X touched a record, on a field no batch touched between the edit
and X, is one the ledger could not date: that record may be either a conflict or restored,
but nothing else.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.memory import MemoryAdapter
from ledger import (
    Address,
    Change,
    RollbackPlan,
    RollbackScope,
    apply_rollback,
    open_ledger,
    plan_rollback,
)
from ledger.ports import Write
from ledger.rollback import check_against_history
from ledger.runs import Run, Target

KEYS = ["1", "2", "3", "4"]
FIELDS = ["a", "b", "c"]
values = st.integers(0, 3)
updates = st.dictionaries(
    st.sampled_from(KEYS), st.dictionaries(st.sampled_from(FIELDS), values, min_size=1), min_size=1
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), updates),
        st.tuples(
            st.just("outside"), st.sampled_from(KEYS), st.sets(st.sampled_from(FIELDS), min_size=1)
        ),
    ),
    min_size=1,
    max_size=8,
)


def initial():
    return {key: {field: 0 for field in FIELDS} for key in KEYS}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    history=steps,
    picks=st.lists(st.integers(0, 100), min_size=1, max_size=2),
    policy=st.sampled_from(["skip", "fields", "abort"]),
)
def test_rolling_back_a_batch_restores_exactly_what_its_policy_allows(
    tmp_path_factory, history, picks, policy
):
    crm = MemoryAdapter("crm", {"contacts": {}})
    ledger = open_ledger(str(tmp_path_factory.mktemp("rb") / "ledger.db"))
    with Run(ledger, "seed") as run:
        run.apply(
            Target(crm, "contacts"),
            [
                Change(Address("crm", "contacts", k), "create", values=v)
                for k, v in initial().items()
            ],
        )
    log = []  # (tag, key, {field: value}) for every real change, in order
    model = initial()
    batches = []
    for step in history:
        if step[0] == "batch":
            name = f"b{len(batches)}"
            batches.append(name)
            changes = [
                Change(Address("crm", "contacts", k), "update", values=v)
                for k, v in step[1].items()
            ]
            with Run(ledger, name) as run:
                run.apply(Target(crm, "contacts"), changes)
            for key, changed in step[1].items():
                log.append((name, key, changed))
                model[key].update(changed)
        else:
            # Outside edits write values never seen before: an edit undone before anyone looks
            # (A -> B -> A) leaves no trace any system could find, so it is not generated.
            _, key, fields = step
            changed = {field: 100 + len(log) for field in sorted(fields)}
            crm.write("contacts", [Write(key, "update", changed, expected={})])
            log.append(("outside", key, changed))
            model[key].update(changed)
    if not batches:
        return
    chosen = {batches[pick % len(batches)] for pick in picks}

    # The reference, per record: the scope's first touch of each field and the value just
    # before it; which fields others changed after their first touch (what `fields` keeps);
    # whether anyone changed the record after the scope first acted on it (what `skip` keeps);
    # and whether an outside edit before that is one the ledger could not date.
    restores: dict[str, dict[str, int]] = {}
    field_conflicts: dict[str, set[str]] = {}
    record_conflicts: set[str] = set()
    undated: set[str] = set()
    for key in KEYS:
        entries = [(tag, changed) for tag, k, changed in log if k == key]
        first_touch: dict[str, int] = {}
        for i, (tag, changed) in enumerate(entries):
            for field in changed if tag in chosen else ():
                first_touch.setdefault(field, i)
        if not first_touch:
            continue
        state = initial()[key]
        before = {}
        for i, (_, changed) in enumerate(entries):
            for field, touch in first_touch.items():
                if touch == i:
                    before[field] = state[field]
            state.update(changed)
        restores[key] = before
        field_conflicts[key] = {
            field
            for i, (tag, changed) in enumerate(entries)
            if tag not in chosen
            for field in changed
            if field in first_touch and i > first_touch[field]
        }
        first = min(first_touch.values())
        if any(tag not in chosen for tag, _ in entries[first + 1 :]):
            record_conflicts.add(key)
        for i, (tag, changed) in enumerate(entries[:first]):
            seen_later = {f for t, c in entries[i + 1 : first + 1] if t != "outside" for f in c}
            if tag == "outside" and set(changed) - seen_later:
                undated.add(key)

    rollback = plan_rollback(
        ledger, RollbackScope(batches=tuple(sorted(chosen))), {"crm": crm}, policy=policy
    )
    listed = {c.entity.rsplit("/", 1)[1] for c in rollback.conflicts}
    if policy == "fields":
        assert listed == {key for key, fields in field_conflicts.items() if fields}
    else:
        assert record_conflicts <= listed <= record_conflicts | undated
    # The plan as made is not read against history again when applied (`vouched`): the full
    # check of the same content, loaded back as from a file, accepts it and finds the same
    # workflows.
    loaded = RollbackPlan.loads(rollback.dumps())
    assert check_against_history(ledger, loaded) == check_against_history(ledger, rollback)
    apply_rollback(ledger, rollback, {"crm": crm})

    expected = {key: dict(fields) for key, fields in model.items()}
    if policy == "abort" and listed:
        assert rollback.aborted
        restores = {}
    for key, before in restores.items():
        if policy != "fields" and key in listed:
            continue  # a conflict: left exactly as it is
        for field, value in before.items():
            if policy != "fields" or field not in field_conflicts[key]:
                expected[key][field] = value
    assert dict(crm.scan("contacts")) == expected
    ledger.close()
