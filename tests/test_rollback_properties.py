"""Property: after any interleaving of batches and outside edits, rolling back batch X restores
exactly the fields X changed on records nobody changed since, leaves every conflicting record
untouched and lists it; under `fields`, the untouched fields of conflicting records come back."""

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
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=steps, pick=st.integers(0, 100), policy=st.sampled_from(["skip", "fields"]))
def test_rolling_back_a_batch_restores_exactly_its_unconflicted_fields(
    tmp_path_factory, history, pick, policy
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
    chosen = batches[pick % len(batches)]

    # The reference: per record, X's touched fields, their values before X, and who came after.
    expected = {key: dict(fields) for key, fields in model.items()}
    conflicted_keys = set()
    for key in KEYS:
        entries = [(i, tag, changed) for i, (tag, k, changed) in enumerate(log) if k == key]
        mine = [i for i, tag, _ in entries if tag == chosen]
        if not mine:
            continue
        touched = {f for i, tag, changed in entries if tag == chosen for f in changed}
        state = initial()[key]
        for i, _, changed in entries:
            if i == mine[0]:
                break
            state.update(changed)
        others = {
            f for i, tag, changed in entries if i > mine[0] and tag != chosen for f in changed
        }
        conflicting = touched & others
        if conflicting:
            conflicted_keys.add(key)
        restorable = touched - conflicting if (policy == "fields" or not conflicting) else set()
        for field in restorable:
            expected[key][field] = state[field]

    rollback = plan(ledger, Scope(batches=(chosen,)), {"crm": crm}, policy=policy)
    assert {c.entity.rsplit("/", 1)[1] for c in rollback.conflicts} == conflicted_keys
    apply(ledger, rollback, {"crm": crm})
    assert dict(crm.scan("contacts")) == expected
    ledger.close()
