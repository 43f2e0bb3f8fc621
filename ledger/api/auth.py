"""Bearer authentication and scope checks: every route but health depends on `require`.

The token is read afresh on every request (`ledger.tokens.authenticate`), so a revocation
holds at once in every worker; 401 says no live token was given, 403 that the token is live
but not for this (its scopes, workflows or systems).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ledger.api.errors import Problem
from ledger.changes import Change
from ledger.errors import InvalidChange
from ledger.tokens import Scope, TokenView, authenticate

bearer = HTTPBearer(auto_error=False, description="A token from `ledger token create`.")


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> TokenView:
    """The live token of the request, or 401."""
    token = None
    if credentials is not None:
        token = authenticate(request.app.state.ledger, credentials.credentials)
    if token is None:
        raise Problem(
            401,
            "unauthorized",
            "send a live token as 'Authorization: Bearer <token>' (see `ledger token create`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token


def require(scope: Scope) -> Callable[[TokenView], TokenView]:
    """A dependency: the caller's token, holding ``scope`` (or 403)."""

    def check(token: Annotated[TokenView, Depends(caller)]) -> TokenView:
        if not token.allows(scope):
            raise Problem(
                403,
                "forbidden",
                f"token {token.name!r} has scopes {', '.join(token.scopes)}; this needs {scope!r}",
            )
        return token

    return check


def check_systems(token: TokenView, systems: Iterable[str], field: str = "entity") -> None:
    """403 unless the token may touch every one of ``systems``."""
    for system in systems:
        if not token.allows_system(system):
            raise Problem(
                403,
                "forbidden",
                f"token {token.name!r} is limited to systems {', '.join(token.systems)}, "
                f"not {system!r}",
                field=field,
            )


def check_workflows(
    token: TokenView, workflows: Iterable[str | None], field: str = "workflow"
) -> None:
    """403 unless the token may act for every one of ``workflows`` (a limited token must
    name one of its own: acting for no workflow would escape the limit)."""
    for workflow in workflows:
        if not token.allows_workflow(workflow):
            raise Problem(
                403,
                "forbidden",
                f"token {token.name!r} acts only for workflows {', '.join(token.workflows)}, "
                f"not {workflow!r}; name one of them in 'workflow'",
                field=field,
            )


def check_actor(token: TokenView, changes: Iterable[Change], *, located: bool = True) -> None:
    """The token's name is the actor of what it records: a change naming another is refused
    (422 naming the change, ``changes[i]`` when ``located``), not silently re-attributed."""
    for index, change in enumerate(changes):
        if change.actor is not None and change.actor != token.name:
            raise InvalidChange(
                f"{change.address}: actor {change.actor!r} is not this token's name "
                f"{token.name!r}, which is recorded as the actor; omit 'actor'",
                line=index + 1 if located else None,
                field="actor",
            )
