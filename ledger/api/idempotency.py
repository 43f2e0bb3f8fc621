"""``Idempotency-Key``: a mutating request sent again with the same key and body gets the first
answer back instead of running again; with another body it is refused naming the key.

Each key (per token) is an aggregate in the ledger's own database, so every worker of every
machine sharing the ledger sees it. The aggregate's version is the lock: a request claims
the key by saving the key's first event (or, after a released or abandoned claim, its next
one); two concurrent requests cannot both save the same version, so only one executes, and
the other is told the first is still running (409) or gets its answer. The claim stores the
SHA-256 of the request (method, path, query, body), never the body.

An answer a retry may change (423 at the gate, 409 concurrency, 5xx) releases the key instead of
being kept, and a claim left by a worker that died is taken over after `CLAIM_TIMEOUT`: the
operations behind it are exactly-once on their own (fingerprints, runs' intents), so a
second execution after a crash records nothing twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Final, cast
from uuid import UUID, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from ledger.api.errors import Problem, retryable
from ledger.api.models import Answer
from ledger.domain import NAMESPACE
from ledger.errors import ConcurrencyConflict
from ledger.tokens import TokenStore

CLAIM_TIMEOUT: Final = timedelta(minutes=5)
MAX_KEY_LENGTH: Final = 255
MAX_ATTEMPTS: Final = 10


def request_id(token: str, key: str) -> UUID:
    """Keys are the client's: one token's key never collides with another's."""
    return uuid5(NAMESPACE, f"idempotency:{token}:{key}")


def request_hash(method: str, path: str, query: str, body: bytes) -> str:
    head = f"{method}\n{path}\n{query}\n".encode()
    return hashlib.sha256(head + body).hexdigest()


class IdempotentRequest(Aggregate):
    """One key's request: claimed, then answered (kept) or released (free to run again)."""

    def __init__(self, token: str, key: str, request_hash: str) -> None:
        self.token = token
        self.key = key
        self.request_hash = request_hash
        self.claimed = True  # being answered, since `claimed_since`
        self.reclaimed_at: datetime | None = None
        self.answer: Answer | None = None

    @property
    def claimed_since(self) -> datetime:
        return self.reclaimed_at or self.created_on

    class Claimed(Aggregate.Created):
        token: str
        key: str
        request_hash: str

    class Reclaimed(Aggregate.Event):
        def apply(self, request: IdempotentRequest) -> None:
            request.claimed = True
            request.reclaimed_at = self.timestamp

    class Answered(Aggregate.Event):
        status: int
        body: bytes
        headers: dict[str, str]

        def apply(self, request: IdempotentRequest) -> None:
            request.answer = Answer(self.status, self.body, self.headers)
            request.claimed = False

    class Released(Aggregate.Event):
        def apply(self, request: IdempotentRequest) -> None:
            request.claimed = False


def run_once(
    ledger: TokenStore,
    token: str,
    key: str,
    fingerprint: str,
    execute: Callable[[], Answer],
) -> tuple[Answer, bool]:
    """The answer to a request under an Idempotency-Key, and whether it is a replay."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise Problem(
            422,
            "invalid",
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters",
            field="header.Idempotency-Key",
            key=key[:MAX_KEY_LENGTH],
        )
    for _ in range(MAX_ATTEMPTS):
        request = _load(ledger, request_id(token, key))
        if request is None:
            request = cast(
                IdempotentRequest,
                IdempotentRequest._create(
                    IdempotentRequest.Claimed,
                    id=request_id(token, key),
                    token=token,
                    key=key,
                    request_hash=fingerprint,
                ),
            )
        else:
            if request.request_hash != fingerprint:
                raise Problem(
                    422,
                    "invalid",
                    f"Idempotency-Key {key!r} was first sent with another request (method, "
                    "path or body); use a new key for a new request",
                    field="header.Idempotency-Key",
                    key=key,
                )
            if request.answer is not None:
                return request.answer, True
            if request.claimed and not _abandoned(request.claimed_since):
                raise _in_progress(key)
            request.trigger_event(IdempotentRequest.Reclaimed)
        try:
            ledger.save(request)  # the version is the lock: one claimant wins
        except IntegrityError:
            continue  # another request claimed or answered it first: look again
        return _execute(ledger, request, execute), False
    raise ConcurrencyConflict(f"Idempotency-Key {key!r} kept changing under us; try again")


def _execute(
    ledger: TokenStore, request: IdempotentRequest, execute: Callable[[], Answer]
) -> Answer:
    try:
        answer = execute()
    except BaseException:
        _release(ledger, request)
        raise
    if retryable(answer):
        _release(ledger, request)
    else:
        request.trigger_event(
            IdempotentRequest.Answered,
            status=answer.status,
            body=answer.body,
            headers=answer.headers,
        )
        with suppress(IntegrityError):  # taken over as abandoned meanwhile: this answer stands
            ledger.save(request)
    return answer


def _release(ledger: TokenStore, request: IdempotentRequest) -> None:
    request.trigger_event(IdempotentRequest.Released)
    with suppress(IntegrityError):  # taken over meanwhile (abandoned): the new claimant decides
        ledger.save(request)


def _abandoned(claimed_at: datetime) -> bool:
    return datetime.now(UTC) - claimed_at > CLAIM_TIMEOUT


def _in_progress(key: str) -> Problem:
    return Problem(
        409,
        "concurrency",
        f"a request with Idempotency-Key {key!r} is still being answered; send it again "
        "shortly to get its answer",
        key=key,
    )


def _load(ledger: TokenStore, id_: UUID) -> IdempotentRequest | None:
    try:
        return cast(IdempotentRequest, ledger.repository.get(id_))
    except AggregateNotFoundError:
        return None


def stored(ledger: TokenStore, token: str, key: str) -> IdempotentRequest | None:
    """The key's request as stored (for tests and operators)."""
    return _load(ledger, request_id(token, key))
