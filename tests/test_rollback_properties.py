"""Property: after any interleaving of batches and outside edits, rolling back batch X (or two
batches) restores exactly the fields X changed on records nobody changed since — each to what it
held just before X first touched it — leaves every conflicting record untouched and lists it;
under `fields`, the untouched fields of conflicting records come back."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.memory import MemoryAdapter
from adapters.protocol import Write
from ledger import Address, Change, open_ledger
from ledger.rollback import Scope, apply, plan
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
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    history=steps,
    picks=st.lists(st.integers(0, 100), min_size=1, max_size=2),
    policy=st.sampled_from(["skip", "fields"]),
)
def test_rolling_back_a_batch_restores_exactly_its_unconflicted_fields(
    tmp_path_factory, history, picks, policy
):
    crm = MemoryAdapter("crm", {"contacts": initial()})
    ledger = open_ledger(str(tmp_path_factory.mktemp("rb") / "ledger.db"))
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

    # The reference: per record and field, the scope's first touch, the value just before it,
    # and whether anyone else touched the field after that.
    expected = {key: dict(fields) for key, fields in model.items()}
    conflicted_keys = set()
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
        conflicting = {
            field
            for i, (tag, changed) in enumerate(entries)
            if tag not in chosen
            for field in changed
            if field in first_touch and i > first_touch[field]
        }
        if conflicting:
            conflicted_keys.add(key)
        restorable = set(first_touch) - conflicting
        if policy == "skip" and conflicting:
            restorable = set()
        for field in restorable:
            expected[key][field] = before[field]

    rollback = plan(ledger, Scope(batches=tuple(sorted(chosen))), {"crm": crm}, policy=policy)
    assert {c.entity.rsplit("/", 1)[1] for c in rollback.conflicts} == conflicted_keys
    apply(ledger, rollback, {"crm": crm})
    assert dict(crm.scan("contacts")) == expected
    ledger.close()
