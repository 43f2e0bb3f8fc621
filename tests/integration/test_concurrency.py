"""Concurrent writers in separate OS processes (SQLite file and PostgreSQL).

Each child process is started with the "spawn" context and opens its own ledger with
``open_ledger(db)``, so it has its own connections, exactly as separate automation runs
would. Children start their work together behind a Barrier so the writes really race.
A child reports through a Queue: its result, or the full traceback of whatever it raised
(it then also exits non-zero); the parent fails the test on any child error, any child
that dies without reporting, any non-zero exit code and any child still running at the
deadline, so nothing that goes wrong in a child is swallowed.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from ledger import Address, Change, ConcurrencyConflict, Ledger, NotFound, open_ledger

pytestmark = pytest.mark.slow

SPAWN = multiprocessing.get_context("spawn")
BARRIER_TIMEOUT = 120.0  # seconds a child waits for the others to reach the barrier

RACE_ENTITY = Address.parse("crm/contacts/race")
RACERS = 4
ROUNDS = 10

SHARED_ENTITY = Address.parse("crm/contacts/shared")
WRITERS = 8
UPDATES_PER_WRITER = 500


# Child-process plumbing ------------------------------------------------------------------


def _child(
    target: Callable[..., Any],
    results: Any,
    barrier: Any,
    name: str,
    args: tuple[Any, ...],
) -> None:
    """Run ``target(*args)`` in a child: report its value, or its traceback and exit 1."""
    try:
        value = target(*args)
    except BaseException:
        barrier.abort()  # release the others rather than leave them waiting for this one
        results.put(("error", name, traceback.format_exc()))
        raise
    results.put(("ok", name, value))


def _run_children(
    jobs: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]],
    barrier: Any,
    timeout: float,
) -> list[Any]:
    """Start one spawned process per ``(target, args)`` job; return their values in order.

    Fails the test, with every child's traceback, if any child raised, died without a
    report, exited non-zero or was still running after ``timeout`` seconds.
    """
    results = SPAWN.Queue()
    processes = {
        f"child-{number}": SPAWN.Process(
            target=_child,
            args=(target, results, barrier, f"child-{number}", args),
            name=f"child-{number}",
        )
        for number, (target, args) in enumerate(jobs)
    }
    for process in processes.values():
        process.start()
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(values) + len(errors) < len(processes):
            if time.monotonic() > deadline:
                for name in processes.keys() - values.keys() - errors.keys():
                    errors[name] = f"still running after {timeout:.0f} s (terminated)"
                    processes[name].terminate()  # only our own children, by handle
                break
            try:
                kind, name, value = results.get(timeout=1.0)
            except queue.Empty:
                # A child flushes its report before it exits, so a dead child whose
                # report has not arrived within a second of quiet never sent one.
                for name, process in processes.items():
                    reported = name in values or name in errors
                    if not reported and not process.is_alive():
                        errors[name] = f"exited with code {process.exitcode} without a report"
                continue
            if kind == "ok":
                values[name] = value
            else:
                errors[name] = value
    finally:
        for process in processes.values():
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()  # only our own children, by handle
                process.join(timeout=30)
        results.close()
        results.join_thread()
    for name, process in processes.items():
        if process.exitcode != 0 and name not in errors:
            errors[name] = f"exited with code {process.exitcode}"
    if errors:
        # Root causes first; a child only released by another's failure gets one line.
        released = {n for n, text in errors.items() if _last_line(text) == BROKEN_BARRIER}
        report = "\n\n".join(
            f"--- {name} ---\n{errors[name]}" for name in sorted(errors.keys() - released)
        )
        if released:
            report += f"\n\n(then {', '.join(sorted(released))}: {BROKEN_BARRIER})"
        pytest.fail(f"{len(errors)} of {len(processes)} child processes failed:\n{report}")
    return [values[name] for name in processes]


BROKEN_BARRIER = "threading.BrokenBarrierError"


def _last_line(text: str) -> str:
    return text.strip().rsplit("\n", 1)[-1].strip()


def _open(db: str, opening: Any) -> Ledger:
    """Open the ledger in a child while holding ``opening``, so children open one at a time.

    Opening runs the library's DDL, and concurrent opens are their own test
    (`test_processes_open_the_same_ledger_at_once`); here only the writes should race.
    """
    with opening:
        return open_ledger(db)


def _count_attempts(ledger: Ledger) -> list[int]:
    """Count calls of the ledger's one-transaction recording step in this process.

    ``record`` calls it once per attempt, so more calls than records means a write lost
    a race (an IntegrityError) and was retried: it shows the race was real.
    """
    calls = [0]
    original = ledger._record_once

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    ledger._record_once = counted  # type: ignore[method-assign]
    return calls


# 1. The same fingerprint from several processes ------------------------------------------


def _race_change(round_number: int) -> Change:
    """Round 0 creates the record (a race on a new entity); later rounds update it, with
    the before-value an automation would have read (so a stale read is refused)."""
    if round_number == 0:
        return Change(RACE_ENTITY, "create", values={"round": 0}, fingerprint="race-fp-0")
    return Change(
        RACE_ENTITY,
        "update",
        values={"round": round_number},
        before={"round": round_number - 1},
        fingerprint=f"race-fp-{round_number}",
    )


def _racer(
    db: str, rounds: int, opening: Any, barrier: Any, ready: Any, finished: Any
) -> list[tuple[Any, int]]:
    """Record round after round the same change as the other racers, released together."""
    try:
        ledger = _open(db, opening)
        try:
            attempts = _count_attempts(ledger)
            outcomes = []
            if not ready.wait(timeout=BARRIER_TIMEOUT):
                raise TimeoutError("the bystander never started")
            for round_number in range(rounds):
                change = _race_change(round_number)
                barrier.wait(timeout=BARRIER_TIMEOUT)
                before = attempts[0]
                # Each round opens a new batch too, so every racer also races to open it.
                receipt = ledger.record(change, batch=f"race-{round_number}")
                outcomes.append((receipt, attempts[0] - before))
            return outcomes
        finally:
            ledger.close()
    finally:
        with finished.get_lock():
            finished.value += 1


def _bystander(
    db: str, opening: Any, ready: Any, finished: Any, racers: int
) -> list[tuple[str, int]]:
    """Keep updating another field of the racers' record until every racer has finished."""
    ledger = _open(db, opening)
    ready.set()
    try:
        recorded: list[tuple[str, int]] = []
        deadline = time.monotonic() + 300
        number = 0
        while finished.value < racers and time.monotonic() < deadline:
            try:
                ledger.state(RACE_ENTITY)
            except NotFound:  # not created yet
                time.sleep(0.001)
                continue
            fingerprint = f"bystander-{number}"
            number += 1
            change = Change(
                RACE_ENTITY, "update", values={"bystander": number}, fingerprint=fingerprint
            )
            try:
                receipt = ledger.record(change, batch="bystander")
            except ConcurrencyConflict:
                continue
            recorded.append((fingerprint, receipt.action.version))
        return recorded
    finally:
        ledger.close()


@pytest.mark.parametrize("bystander", [False, True], ids=["alone", "with-bystander"])
def test_same_fingerprint_from_two_processes_is_recorded_once(db_url: str, bystander: bool) -> None:
    """Racers record one change with one fingerprint: one records it, the others get its
    receipt back as a duplicate. With a bystander, another process keeps changing the same
    record meanwhile, so a loser's retry finds a record whose latest action is not the
    winner's (and, rarely, a racer reads the record after a stale fingerprint lookup: the
    deterministic test below forces that window)."""
    open_ledger(db_url).close()  # create the tables once, before the race
    opening, barrier, ready = SPAWN.Lock(), SPAWN.Barrier(RACERS), SPAWN.Event()
    finished = SPAWN.Value("i", 0)
    jobs: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
        (_racer, (db_url, ROUNDS, opening, barrier, ready, finished))
    ] * RACERS
    if bystander:
        jobs.append((_bystander, (db_url, opening, ready, finished, RACERS)))
    else:
        ready.set()
    results = _run_children(jobs, barrier, timeout=300)
    per_racer, bystanding = results[:RACERS], (results[RACERS] if bystander else [])

    ledger = open_ledger(db_url)
    try:
        history = ledger.history(RACE_ENTITY)
        state = ledger.state(RACE_ENTITY)
        holds_transactions = ledger.index.holds_transactions
    finally:
        ledger.close()

    assert [action.version for action in history] == list(range(1, len(history) + 1))
    fingerprints = Counter(action.fingerprint for action in history)
    expected = [f"race-fp-{n}" for n in range(ROUNDS)] + [fp for fp, _ in bystanding]
    assert fingerprints == Counter(expected)
    assert state.fields["round"] == ROUNDS - 1
    assert state.version == len(history)
    assert bool(bystanding) == bystander, "the bystander recorded nothing during the race"
    for fingerprint, version in bystanding:
        assert history[version - 1].fingerprint == fingerprint

    retried_rounds = 0
    for round_number in range(ROUNDS):
        outcomes = [racer[round_number] for racer in per_racer]
        receipts = [receipt for receipt, _attempts in outcomes]
        fingerprint = f"race-fp-{round_number}"
        (stored,) = [a for a in history if a.fingerprint == fingerprint]
        firsts = [r for r in receipts if not r.duplicate]
        assert len(firsts) == 1, f"round {round_number}: {len(firsts)} receipts not duplicate"
        assert sum(r.duplicate for r in receipts) == RACERS - 1
        for receipt in receipts:
            action = receipt.action
            assert action.fingerprint == fingerprint
            assert action.entity_id == RACE_ENTITY.entity_id
            assert (action.version, action.position) == (stored.version, stored.position)
            assert action == stored, f"round {round_number}: receipt differs from history"
        if any(attempts > 1 for _receipt, attempts in outcomes):
            retried_rounds += 1
    if holds_transactions:
        # SQLite: each racer reads and writes in one write transaction, so the racers queue
        # for it and a loser finds the winner's action on its first attempt.
        assert retried_rounds == 0
    else:
        # Some loser must have gone through the conflict-and-retry path, or nothing raced.
        assert retried_rounds > 0, "no round had a write conflict: the processes did not race"


@pytest.mark.parametrize("operation", ["create", "update-with-before"])
def test_a_replay_outpaced_by_two_writers_gets_the_duplicate_receipt(
    db_url: str, operation: str
) -> None:
    """The race above, made deterministic, at its narrowest window: right after a racer
    has looked its fingerprint up (not there yet), the winner records that change and a
    bystander records another change of the same record. The racer must still answer
    with the winner's receipt, not refuse its own change against the newer record."""
    address = Address.parse("crm/contacts/window")
    racer, winner, bystander = open_ledger(db_url), open_ledger(db_url), open_ledger(db_url)
    try:
        if racer.index.holds_transactions:
            pytest.skip(
                "no such window: the racer's lookup and write share one write transaction, "
                "which the other writers wait for (the race above runs them for real)"
            )
        if operation == "create":
            change = Change(address, "create", values={"n": 1}, fingerprint="F")
        else:
            winner.record(Change(address, "create", values={"n": 0}), batch="setup")
            change = Change(address, "update", values={"n": 1}, before={"n": 0}, fingerprint="F")
        recorder = racer.index
        lookup = recorder.find_fingerprints
        outpaced: list[Any] = []

        def lookup_then_outpaced(fingerprints: Sequence[str]) -> Any:
            found = lookup(fingerprints)
            if not outpaced:  # only the racer's first attempt
                outpaced.append(winner.record(change, batch="b1"))
                bystander.record(Change(address, "update", values={"m": 2}), batch="b2")
            return found

        recorder.find_fingerprints = lookup_then_outpaced  # type: ignore[method-assign]
        receipt = racer.record(change, batch="b1")
        assert outpaced, "the racer never looked its fingerprint up"
        assert receipt.duplicate
        assert receipt.action == outpaced[0].action
        assert [a.fingerprint for a in racer.history(address)].count("F") == 1
    finally:
        for ledger in (racer, winner, bystander):
            ledger.close()


# 2. Eight writers, one entity, no lost update --------------------------------------------


def _writer(db: str, worker: int, updates: int, opening: Any, barrier: Any) -> dict[str, Any]:
    """Record ``updates`` updates of the shared entity; count successes and conflicts."""
    ledger = _open(db, opening)
    try:
        attempts = _count_attempts(ledger)
        field = f"last_by_w{worker}"
        succeeded: list[tuple[int, int, int | None]] = []  # (i, version, position)
        conflicted: list[int] = []
        barrier.wait(timeout=BARRIER_TIMEOUT)
        started = time.monotonic()
        for i in range(updates):
            change = Change(
                SHARED_ENTITY, "update", values={field: i}, fingerprint=f"w{worker}-{i}"
            )
            try:
                receipt = ledger.record(change, batch=f"writer-w{worker}")
            except ConcurrencyConflict:
                conflicted.append(i)
                continue
            if receipt.duplicate:
                raise AssertionError(f"w{worker}-{i}: a first recording came back duplicate")
            succeeded.append((i, receipt.action.version, receipt.action.position))
        return {
            "worker": worker,
            "succeeded": succeeded,
            "conflicted": conflicted,
            "attempts": attempts[0],
            "seconds": time.monotonic() - started,
        }
    finally:
        ledger.close()


def test_eight_writers_to_one_entity_lose_no_update(db_url: str) -> None:
    ledger = open_ledger(db_url)
    try:
        ledger.record(Change(SHARED_ENTITY, "create", values={"name": "shared"}), batch="setup")
    finally:
        ledger.close()

    opening, barrier = SPAWN.Lock(), SPAWN.Barrier(WRITERS)
    started = time.monotonic()
    reports = _run_children(
        [
            (_writer, (db_url, worker, UPDATES_PER_WRITER, opening, barrier))
            for worker in range(WRITERS)
        ],
        barrier,
        timeout=1800,
    )
    elapsed = time.monotonic() - started

    ledger = open_ledger(db_url)
    try:
        history = ledger.history(SHARED_ENTITY)
        state = ledger.state(SHARED_ENTITY)
    finally:
        ledger.close()

    successes = sum(len(r["succeeded"]) for r in reports)
    conflicts = sum(len(r["conflicted"]) for r in reports)
    summary = (
        f"{elapsed:.1f} s, {successes} recorded, {conflicts} ConcurrencyConflict, "
        f"{sum(r['attempts'] for r in reports)} attempts in all; per writer "
        + ", ".join(
            f"w{r['worker']}: {len(r['succeeded'])}/{len(r['conflicted'])}"
            f"/{r['attempts']} in {r['seconds']:.1f} s"
            for r in reports
        )
    )
    backend = "postgres" if "://" in db_url else "sqlite"
    print(f"\neight writers [{backend}]: {summary}")

    # Every attempt ended either recorded or refused; none was lost or both.
    assert successes + conflicts == WRITERS * UPDATES_PER_WRITER, summary
    # Versions are contiguous and hold exactly the create plus each success.
    versions = [action.version for action in history]
    assert versions == list(range(1, len(history) + 1)), summary
    assert len(history) - 1 == successes, summary
    assert state.version == len(history)

    by_fingerprint = Counter(action.fingerprint for action in history[1:])
    expected = {
        f"w{r['worker']}-{i}": (version, position)
        for r in reports
        for i, version, position in r["succeeded"]
    }
    refused = {f"w{r['worker']}-{i}" for r in reports for i in r["conflicted"]}
    assert set(by_fingerprint) == set(expected), summary
    assert all(count == 1 for count in by_fingerprint.values()), by_fingerprint.most_common(3)
    assert not refused & set(by_fingerprint), sorted(refused & set(by_fingerprint))[:5]
    # Each receipt names the version and position the update really has.
    for action in history[1:]:
        assert expected[action.fingerprint] == (action.version, action.position)

    # No update was computed from stale state: each one's before-value is what the
    # previous update of that field left (absent before a writer's first update).
    last: dict[str, int] = {}
    for action in history[1:]:
        ((field, value),) = action.after.items()
        assert action.before == ({field: last[field]} if field in last else {}), action
        last[field] = value

    final = {"name": "shared"}
    for r in reports:
        if r["succeeded"]:
            final[f"last_by_w{r['worker']}"] = r["succeeded"][-1][0]
    assert state.fields == final


# 3. Several processes opening one ledger at once -------------------------------------------


OPENERS = 8
OPEN_ROUNDS = 3


def _opener(db: str, worker: int, rounds: int, barrier: Any) -> list[int]:
    """Open the ledger together with the others, record one create, close; several rounds."""
    versions = []
    for round_number in range(rounds):
        barrier.wait(timeout=BARRIER_TIMEOUT)
        ledger = open_ledger(db)
        try:
            address = Address.parse(f"crm/opened/{worker}-{round_number}")
            receipt = ledger.record(Change(address, "create", values={"w": worker}))
            versions.append(receipt.action.version)
        finally:
            ledger.close()
    return versions


@pytest.mark.parametrize("initialised", [False, True], ids=["fresh", "initialised"])
def test_processes_open_the_same_ledger_at_once(db_url: str, initialised: bool) -> None:
    """Automation runs started together each open the ledger (and so run its DDL) at once."""
    if initialised:
        open_ledger(db_url).close()
    barrier = SPAWN.Barrier(OPENERS)
    versions = _run_children(
        [(_opener, (db_url, worker, OPEN_ROUNDS, barrier)) for worker in range(OPENERS)],
        barrier,
        timeout=300,
    )
    assert versions == [[1] * OPEN_ROUNDS] * OPENERS
    ledger = open_ledger(db_url)
    try:
        opened = list(ledger.collection("crm", "opened"))
    finally:
        ledger.close()
    assert len(opened) == OPENERS * OPEN_ROUNDS


# The plumbing ------------------------------------------------------------------------------


def test_child_failures_are_reported() -> None:
    """The plumbing itself: an exception in a child fails the test with its traceback."""
    barrier = SPAWN.Barrier(2)
    with pytest.raises(pytest.fail.Exception, match=r"(?s)--- child-1 ---.*ValueError: boom"):
        jobs = [(_fail_or_wait, (barrier, False)), (_fail_or_wait, (barrier, True))]
        _run_children(jobs, barrier, timeout=60)


def _fail_or_wait(barrier: Any, fail: bool) -> None:
    if fail:
        raise ValueError("boom")
    barrier.wait(timeout=BARRIER_TIMEOUT)  # broken by the failing child's abort
