"""The body of a mutating request: read up to the size limit (counted while reading, so an
oversized body is refused before it is held in memory), parsed by the ledger's strict JSON
reader, its changes built by `Change.from_mapping` exactly as a change file's lines are, and
answered once per Idempotency-Key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from ledger.api.errors import Problem, problem_of, respond
from ledger.api.idempotency import request_hash, run_once
from ledger.api.models import Answer
from ledger.change_files import ChangeFile
from ledger.changes import Change
from ledger.encoding import encode_value
from ledger.errors import InvalidChange, LedgerError
from ledger.tokens import TokenView
from ledger.values import parse_json

IDEMPOTENCY_HEADER = "Idempotency-Key"


async def read_body(request: Request) -> bytes:
    """The raw body, or 413 as soon as it is known to exceed the limit."""
    limit: int = request.app.state.max_body
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        "too_large",
        f"the body is over {limit} bytes; send fewer changes per request",
        expected=limit,
    )


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, parsed strictly (exact numbers, no duplicate keys)."""
    data = parse_json(body, where="body")
    if not isinstance(data, dict):
        raise InvalidChange(
            f"the body must be a JSON object, not {type(data).__name__}", field="body"
        )
    return data


def changes_of(items: Any, where: str = "changes") -> tuple[Change, ...]:
    """A list of change-file lines; an error names ``changes[i].field``."""
    if not isinstance(items, list) or not items:
        raise InvalidChange(f"{where} must be a non-empty list of changes", field=where)
    changes = []
    for index, item in enumerate(items):
        try:
            changes.append(Change.from_mapping(item))
        except InvalidChange as error:
            raise error.at_line(index + 1) from None
    return tuple(changes)


def text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidChange(f"{name} must be text", field=name)
    return value


def flag(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise InvalidChange(f"{name} must be true or false", field=name)
    return value


def unknown_keys(data: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InvalidChange(
            f"unknown field {unknown[0]!r}; expected some of: {', '.join(known)}",
            field=unknown[0],
        )


def answer_once(
    request: Request,
    token: TokenView,
    body: bytes,
    execute: Callable[[], Answer],
) -> Response:
    """Run ``execute`` (its library errors become answers, so they are kept and replayed
    like any other), once per Idempotency-Key when one is given."""
    ledger = request.app.state.ledger

    def answered() -> Answer:
        try:
            return execute()
        except LedgerError as error:
            return problem_of(error, ledger, where="changes").answer()

    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return respond(answered())
    fingerprint = request_hash(request.method, request.url.path, request.url.query, body)
    answer, replayed = run_once(ledger, token.name, key, fingerprint, answered)
    return respond(answer, replayed=replayed)


def change_file(body: bytes, changes: tuple[Change, ...], items: list[Any]) -> ChangeFile:
    """The body's changes as a change file: ``changes[i]`` is its line i + 1, and each line's
    text (for the fingerprint of a line without one) is the item in the edge encoding."""
    return ChangeFile(
        Path("the request body"),
        body,
        changes,
        tuple(range(1, len(changes) + 1)),
        tuple(orjson.dumps(encode_value(item), option=orjson.OPT_SORT_KEYS) for item in items),
    )
