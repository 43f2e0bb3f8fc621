"""API tokens: who may call the HTTP API, for what, and for which workflows and systems.

A token is an aggregate whose id derives from its name, so its creation and revocation are
events in the ledger's history like any other, and every worker finds it without a lookup
table. Its name is the actor recorded for whatever it records, so a name is never reused:
a revoked name stays revoked, and history's actors keep meaning one token each.

Only the SHA-256 digest of the secret is stored. The secret is 32 random bytes: a slow
password hash (bcrypt, argon2) defends low-entropy human passwords against guessing, which a
2^256 space does not need, and it would cost every request tens of milliseconds. Digests are
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, Protocol, cast, get_args
from uuid import UUID, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from ledger.domain import NAMESPACE
from ledger.errors import InvalidChange, NotFound

Scope = Literal["read", "record", "apply", "rollback", "approve", "admin"]
SCOPES: Final[tuple[Scope, ...]] = get_args(Scope)
PREFIX: Final = "lt_"  # recognisable by secret scanners; then NAME '.' SECRET
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")
PAGE_SIZE = 1000


def token_id(name: str) -> UUID:
    """The aggregate id of a token: derived from its name, so any worker finds it."""
    return uuid5(NAMESPACE, f"token:{name}")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Token(Aggregate):
    """One API token: its scopes, the workflows and systems it is limited to, its digest."""

    def __init__(
        self,
        name: str,
        digest: str,
        scopes: list[str],
        workflows: list[str],
        systems: list[str],
        created_by: str,
    ) -> None:
        self.name = name
        self.digest = digest
        self.scopes = scopes
        self.workflows = workflows
        self.systems = systems
        self.created_by = created_by
        self.revoked_by: str | None = None
        self.revoked_at: datetime | None = None

    class Issued(Aggregate.Created):
        name: str
        digest: str
        scopes: list[str]
        workflows: list[str]
        systems: list[str]
        created_by: str

    class Revoked(Aggregate.Event):
        actor: str

        def apply(self, token: Token) -> None:
            token.revoked_by = self.actor
            token.revoked_at = self.timestamp


@dataclass(frozen=True)
class TokenView:
    """A token as listed and as the API knows its caller (never its secret)."""

    name: str
    scopes: tuple[Scope, ...]
    workflows: tuple[str, ...]  # empty: any workflow
    systems: tuple[str, ...]  # empty: any system
    created_by: str
    created_at: datetime
    revoked_by: str | None = None
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, token: Token) -> TokenView:
        return cls(
            token.name,
            cast(tuple[Scope, ...], tuple(token.scopes)),
            tuple(token.workflows),
            tuple(token.systems),
            token.created_by,
            token.created_on,
            token.revoked_by,
            token.revoked_at,
        )

    def allows(self, scope: Scope) -> bool:
        """``admin`` holds every scope."""
        return scope in self.scopes or "admin" in self.scopes

    def allows_workflow(self, workflow: str | None) -> bool:
        """A limited token acts only for its named workflows (not for none)."""
        return not self.workflows or workflow in self.workflows

    def allows_system(self, system: str) -> bool:
        return not self.systems or system in self.systems

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scopes": list(self.scopes),
            "workflows": list(self.workflows),
            "systems": list(self.systems),
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "revoked_by": self.revoked_by,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True)
class IssuedToken:
    """A new token and its bearer secret, shown once: only the digest is kept."""

    token: TokenView
    secret: str

    def to_json(self) -> dict[str, Any]:
        return {**self.token.to_json(), "secret": self.secret}


class TokenStore(Protocol):
    """What tokens need of the ledger: its repository, recorder and `save`."""

    @property
    def repository(self) -> Any: ...

    @property
    def recorder(self) -> Any: ...

    def save(self, *objs: Any, **kwargs: Any) -> Any: ...


def parse_scopes(items: Iterable[str]) -> tuple[Scope, ...]:
    """Scopes from ``read,record`` style text (repeatable), each checked."""
    scopes = [part.strip() for item in items for part in item.split(",") if part.strip()]
    for scope in scopes:
        if scope not in SCOPES:
            raise InvalidChange(f"scope {scope!r} is not one of {', '.join(SCOPES)}", field="scope")
    if not scopes:
        raise InvalidChange(f"give at least one scope of {', '.join(SCOPES)}", field="scope")
    return cast(tuple[Scope, ...], tuple(dict.fromkeys(scopes)))


def create_token(
    ledger: TokenStore,
    name: str,
    scopes: Sequence[Scope],
    *,
    workflows: Sequence[str] = (),
    systems: Sequence[str] = (),
    actor: str,
) -> IssuedToken:
    """Issue a token; its secret is in the answer and nowhere else."""
    if not _NAME.match(name):
        raise InvalidChange(
            f"token name {name!r} must be 1 to 64 letters, digits, '_', '.' or '-'", field="name"
        )
    secret = secrets.token_urlsafe(32)  # 32 random bytes; no '.' in the alphabet
    token = cast(
        Token,
        Token._create(
            Token.Issued,
            id=token_id(name),
            name=name,
            digest=digest(secret),
            scopes=list(parse_scopes(scopes)),
            workflows=sorted(set(workflows)),
            systems=sorted(set(systems)),
            created_by=actor,
        ),
    )
    try:
        ledger.save(token)
    except IntegrityError:
        raise InvalidChange(
            f"a token named {name!r} exists or existed (names are never reused, so the actors "
            "in history keep meaning one token); choose another name",
            field="name",
        ) from None
    return IssuedToken(TokenView.of(token), f"{PREFIX}{name}.{secret}")


def revoke_token(ledger: TokenStore, name: str, *, actor: str) -> TokenView:
    """Revoke a token from its next request on; revoking it again changes nothing."""
    token = _load(ledger, name)
    if token is None:
        raise NotFound(f"no token named {name!r}; see `ledger token list`")
    if token.revoked_at is None:
        token.trigger_event(Token.Revoked, actor=actor)
        try:
            ledger.save(token)
        except IntegrityError:  # revoked by someone else meanwhile: that revocation stands
            token = _load(ledger, name)
            assert token is not None
    return TokenView.of(token)


def list_tokens(ledger: TokenStore) -> list[TokenView]:
    """Every token ever issued, oldest first, revoked ones included."""
    topic = f"{Token.Issued.__module__}:{Token.Issued.__qualname__}"
    views: list[TokenView] = []
    start = 1
    while True:
        page = ledger.recorder.select_notifications(start, PAGE_SIZE, topics=[topic])
        for notification in page:
            views.append(TokenView.of(ledger.repository.get(notification.originator_id)))
        if len(page) < PAGE_SIZE:
            return views
        start = page[-1].id + 1


def authenticate(ledger: TokenStore, bearer: str) -> TokenView | None:
    """The live token a bearer secret belongs to, or None (unknown, wrong or revoked). Read
    afresh on every call, so a revocation holds at once in every worker."""
    if not bearer.startswith(PREFIX):
        return None
    name, dot, secret = bearer[len(PREFIX) :].rpartition(".")
    if not dot or not _NAME.match(name):
        return None
    token = _load(ledger, name)
    if token is None or token.revoked_at is not None:
        return None
    if not hmac.compare_digest(token.digest, digest(secret)):
        return None
    return TokenView.of(token)


def _load(ledger: TokenStore, name: str) -> Token | None:
    try:
        return cast(Token, ledger.repository.get(token_id(name)))
    except AggregateNotFoundError:
        return None
