"""The HTTP load harness of issue 19, shared by ``tests/integration/test_api_load.py`` and
bench row 12 (``bench/http_tasks.py`` loads this file as ``bench/pg.py`` loads the test
PostgreSQL server):

* `plan`: a deterministic list of record requests (one change line each, its own record)
  where about a tenth repeat an earlier Idempotency-Key with the same body: the first
  ``racing`` requests are copies of one key (the clients send them all at once), half the
  other repeats follow their first copy at once (racing it), half come much later (replays
  of a kept answer);
* `served`: a server command (``ledger serve --workers 4``, or the bench's floor) run as a
  subprocess on a free loopback port, ready once every worker said so;
* `drive`: N keep-alive clients (``http.client``: the lightest client, so the clients cost
  the shared CPUs as little as possible) sending the plan in order, each request timed;
* `check_answers`, `resend_refused`, `check_ledger`: every key executed once, every other
  copy answered with the first answer byte for byte, no 5xx, and the ledger holding exactly
  one action per distinct key with the values sent. Any breach raises `LoadFailure`.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue
from typing import Any
from urllib.parse import urlsplit

import orjson

RECORD_PATH = "/v1/actions"
SYSTEM, COLLECTION = "crm", "contacts"
READY = "Application startup complete."
OWNERS = ("ana", "bo", "chen", "dara")


class LoadFailure(AssertionError):
    """The server lost, doubled or garbled something under load (or never came up)."""


@dataclass(frozen=True)
class Planned:
    key: str  # Idempotency-Key
    record: str  # the record's key in crm/contacts
    body: bytes


@dataclass(frozen=True)
class Answered:
    index: int  # into the plan
    status: int
    body: bytes
    replayed: bool  # Idempotent-Replayed: true
    seconds: float


def change(record: int) -> dict[str, Any]:
    """What a sync step records after writing the CRM itself: three fields, with before-values."""
    return {
        "entity": f"{SYSTEM}/{COLLECTION}/{record:07d}",
        "op": "update",
        "before": {"lifecycle_stage": "lead", "score": record % 100, "owner": OWNERS[record % 4]},
        "set": {
            "lifecycle_stage": "customer",
            "score": (record * 7) % 100,
            "owner": OWNERS[(record + 1) % 4],
        },
        "workflow": "lead-sync",
        "inputs": {"rule": "score >= 50 -> customer", "row": record},
        "sources": [f"sheet/leads/{record}"],
    }


def plan(n: int, *, repeats: float = 0.1, racing: int = 16, seed: int = 19) -> list[Planned]:
    """``n`` requests, ``round(n * repeats)`` of them (at least ``racing - 1``) repeats."""
    repeated = max(round(n * repeats), racing - 1)
    distinct = n - repeated
    if distinct < 2 or racing < 2:
        raise ValueError(f"{n} requests leave too few distinct keys for {repeated} repeats")
    rng = random.Random(seed)
    picks = rng.sample(range(1, distinct), min(distinct - 1, repeated - (racing - 1)))
    chasing = set(picks[: len(picks) // 2])
    ranked: list[tuple[float, int]] = [(float(i), 0) for i in range(racing)]  # one key, racing
    for record in range(1, distinct):
        ranked.append((float(len(ranked)), record))
        if record in chasing:
            ranked.append((float(len(ranked)), record))  # right behind its first copy
    first = {record: rank for rank, record in reversed(ranked)}
    end = float(len(ranked))
    ranked += [(rng.uniform(first[record] + 1, end), record) for record in picks[len(picks) // 2 :]]
    ranked.sort()
    bodies = {record: orjson.dumps(change(record)) for _, record in ranked}
    return [Planned(f"load-{record:07d}", f"{record:07d}", bodies[record]) for _, record in ranked]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    def workers_peak_mib(self) -> float:
        """The largest peak RSS of the server's worker processes (Linux ``VmHWM``)."""
        peaks = [0.0]
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError):
                    status = Path(f"/proc/{child}/status").read_text()
                    peaks += [
                        int(line.split()[1]) / 1024
                        for line in status.splitlines()
                        if line.startswith("VmHWM:")
                    ]
        return max(peaks)


@contextlib.contextmanager
def served(
    command: Sequence[str], env: dict[str, str], workers: int, *, timeout: float = 120
) -> Iterator[Server]:
    """Run ``command --host 127.0.0.1 --port P`` until the block ends; yields it once each
    of its ``workers`` has logged that it started. Its log is drained all along (one
    line per request), the last lines kept for the error if it stops early."""
    port = free_port()
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    tail: deque[str] = deque(maxlen=40)
    lines: Queue[str | None] = Queue()

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            tail.append(line.rstrip())
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline, started = time.monotonic() + timeout, 0
        while started < workers:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                raise LoadFailure(f"{command[-1]}: not ready in {timeout:.0f} s") from None
            if line is None:
                raise LoadFailure("the server stopped before it was ready:\n" + "\n".join(tail))
            started += READY in line
        yield Server(f"http://127.0.0.1:{port}", process.pid)
        if process.poll() is not None:
            raise LoadFailure("the server died under load:\n" + "\n".join(tail))
    finally:
        process.send_signal(signal.SIGINT)  # uvicorn's graceful stop, workers included
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        lines.queue.clear()  # nobody reads them any more


def drive(
    url: str,
    path: str,
    headers: dict[str, str],
    requests: Sequence[Planned],
    clients: int,
    *,
    timeout: float = 60,
) -> tuple[list[Answered], float]:
    """Send every planned request (in plan order, from ``clients`` keep-alive connections):
    the answers in plan order and the wall-clock seconds of the whole run."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    answers: list[Answered | None] = [None] * len(requests)
    turn = iter(range(len(requests)))
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            while not failures:
                with lock:
                    index = next(turn, None)
                if index is None:
                    return
                planned = requests[index]
                sent = {
                    **headers,
                    "Content-Type": "application/json",
                    "Idempotency-Key": planned.key,
                }
                started = time.perf_counter()
                connection.request("POST", path, planned.body, sent)
                response = connection.getresponse()
                body = response.read()
                seconds = time.perf_counter() - started
                replayed = response.getheader("Idempotent-Replayed") == "true"
                answers[index] = Answered(index, response.status, body, replayed, seconds)
        except BaseException as error:
            failures.append(error)
        finally:
            connection.close()

    failures: list[BaseException] = []
    threads = [threading.Thread(target=client, name=f"load-client-{i}") for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    missing = [i for i, answer in enumerate(answers) if answer is None]
    if failures:
        raise LoadFailure(f"a client failed: {failures[0]!r}") from failures[0]
    if missing:
        raise LoadFailure(f"{len(missing)} requests got no answer (first: #{missing[0]})")
    return [a for a in answers if a is not None], wall


def figures(answers: Sequence[Answered], wall: float) -> dict[str, float]:
    """Requests per second, and p50/p99 latency in milliseconds."""
    latencies = sorted(a.seconds for a in answers)
    centiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "count": len(answers),
        "seconds": wall,
        "rps": len(answers) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": centiles[98] * 1000,
    }


def check_answers(requests: Sequence[Planned], answers: Sequence[Answered]) -> dict[str, Any]:
    """Every key executed exactly once; its other copies got its first answer byte for byte or
    a 409 naming the key (still being answered); no 5xx, nothing else. Returns the first
    answer per key, the indexes of the 409s, and counts."""
    first: dict[str, Answered] = {}
    refused: list[int] = []
    for answer in answers:
        planned = requests[answer.index]
        if answer.status >= 500:
            raise LoadFailure(f"{planned.key}: {answer.status} {answer.body[:300]!r}")
        if answer.status == 409:
            problem = orjson.loads(answer.body)
            if problem.get("error") != "concurrency" or problem.get("key") != planned.key:
                raise LoadFailure(f"{planned.key}: unexpected 409 {answer.body[:300]!r}")
            refused.append(answer.index)
        elif answer.status != 201 or (not answer.replayed and planned.key in first):
            raise LoadFailure(
                f"{planned.key}: {answer.status} (replayed: {answer.replayed}) "
                f"{answer.body[:300]!r}; executed before: {planned.key in first}"
            )
        elif not answer.replayed:
            first[planned.key] = answer
    distinct = {planned.key for planned in requests}
    if set(first) != distinct:
        never = sorted(distinct - set(first))
        raise LoadFailure(f"{len(never)} keys were never executed (first: {never[:3]})")
    for answer in answers:
        planned = requests[answer.index]
        if answer.replayed and (answer.status, answer.body) != _kept(first[planned.key]):
            raise LoadFailure(f"{planned.key}: the replay differs from the first answer")
        if answer.status == 201 and orjson.loads(answer.body)["entity"] != entity_of(planned):
            raise LoadFailure(f"{planned.key}: answered for another record: {answer.body!r}")
    replayed = sum(a.replayed for a in answers)
    return {"first": first, "refused": refused, "replayed": replayed, "distinct": len(first)}


def resend_refused(
    url: str,
    path: str,
    headers: dict[str, str],
    requests: Sequence[Planned],
    checked: dict[str, Any],
) -> None:
    """Send each request refused with 409 again, once, after the run (as its client would):
    it must now get the kept first answer, byte for byte."""
    if not checked["refused"]:
        return
    again, _ = drive(url, path, headers, [requests[i] for i in checked["refused"]], 1)
    for answer, index in zip(again, checked["refused"], strict=True):
        key = requests[index].key
        if not answer.replayed or (answer.status, answer.body) != _kept(checked["first"][key]):
            raise LoadFailure(f"{key}: sent again, {answer.status} {answer.body[:300]!r}")


def _kept(answer: Answered) -> tuple[int, bytes]:
    return answer.status, answer.body


def entity_of(planned: Planned) -> str:
    return f"{SYSTEM}/{COLLECTION}/{planned.record}"


def check_ledger(ledger: Any, requests: Sequence[Planned]) -> int:
    """The ledger holds one action per distinct key, on its record, with the values sent
    (nothing lost, nothing twice): read back through the ledger's own collection."""
    sent = {planned.record: orjson.loads(planned.body) for planned in requests}
    seen = 0
    for state in ledger.collection(SYSTEM, COLLECTION):
        record = state.entity.rsplit("/", 1)[1]
        expected = sent.get(record)
        if expected is None:
            raise LoadFailure(f"{state.entity}: recorded, but no request named it")
        if state.version != 1:
            raise LoadFailure(f"{state.entity}: {state.version} actions, not one")
        if any(state.fields.get(name) != value for name, value in expected["set"].items()):
            raise LoadFailure(f"{state.entity}: holds {state.fields}, not {expected['set']}")
        seen += 1
    if seen != len(sent):
        raise LoadFailure(f"the ledger holds {seen} records, {len(sent)} keys were sent")
    return seen


def count_actions(url: str) -> int:
    """Every action in a PostgreSQL ledger's index (the load's and any other)."""
    import psycopg

    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT count(*) FROM ledger_actions").fetchone()
    return int(row[0]) if row else 0
