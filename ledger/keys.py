"""Record keys: their one text form and their one order.

A record's key is text. A key of one column is its value, with ``%`` written ``%25`` (a
``/`` stays: a single key may hold slashes); a composite key is its parts, each with ``%``
written ``%25`` and ``/`` written ``%2F``, joined by ``/`` (`join_key`). A part written
with any other valid percent-escape (``o%27brien`` for ``o'brien``) names the same record:
`canonical_key` decodes every escape and writes the key back in the one form, so every
address, index row and adapter agrees on one text per record.

The one order of records, for every scan and every merge, is ascending key text as Python
compares str (code point order). It is the order SQLite's ``BINARY`` and PostgreSQL's
``"C"`` collation give UTF-8 text, so the ledger's index streams a collection in it
natively; an adapter that cannot list in it sorts its stream (`adapters.keysort`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar, cast

from ledger.errors import AdapterError

L = TypeVar("L")
R = TypeVar("R")

_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def join_key(parts: Sequence[Any]) -> str:
    """The key text of a record from its key's parts (one part for a single-column key)."""
    if len(parts) == 1:
        return str(parts[0]).replace("%", "%25")
    return "/".join(str(part).replace("%", "%25").replace("/", "%2F") for part in parts)


def split_key(key: str, count: int) -> list[str]:
    """The parts of a key of `count` columns (decoded); the caller checks their number and,
    with `join_key`, that `key` was written in the one form."""
    if count == 1:
        return [_decode(key)]
    return [_decode(part) for part in key.split("/")]


def canonical_key(key: str) -> str:
    """`key` in the one form: every valid percent-escape decoded, then ``%`` and ``/`` within
    a part written ``%25`` and ``%2F``. Idempotent; a key without ``%`` is already canonical."""
    if "%" not in key:
        return key
    return "/".join(
        _decode(part).replace("%", "%25").replace("/", "%2F") for part in key.split("/")
    )


def _decode(part: str) -> str:
    """Percent-escapes of UTF-8 decoded; a ``%`` that begins none (``50%``, ``%FF``) is a
    literal ``%``."""
    if "%" not in part:
        return part
    return _ESCAPES.sub(_decode_run, part)


def _decode_run(run: re.Match[str]) -> str:
    text = bytes.fromhex(run.group().replace("%", "")).decode("utf-8", "surrogateescape")
    return _NOT_UTF8.sub(lambda byte: f"%{ord(byte.group()) - 0xDC00:02X}", text)


def in_key_order(records: Iterable[tuple[str, L]], where: str) -> Iterator[tuple[str, L]]:
    """A stream of (key, item), checked while it passes to be in strictly ascending key order
    and in the one form (a merge of two streams is only right if both are)."""
    previous: str | None = None
    for key, item in records:
        if previous is not None and not previous < key:
            raise AdapterError(
                f"{where}: the scan gave key {key!r} after {previous!r}; every scan must "
                "give each record once, in ascending key-text order (see ledger/keys.py)"
            )
        if "%" in key and canonical_key(key) != key:
            raise AdapterError(
                f"{where}: the scan gave key {key!r}, which is written "
                f"{canonical_key(key)!r} in the ledger's one key form (see ledger/keys.py)"
            )
        previous = key
        yield key, item


def merge_by_key(
    left: Iterator[L],
    right: Iterator[R],
    left_key: Callable[[L], str],
    right_key: Callable[[R], str],
) -> Iterator[tuple[str, L | None, R | None]]:
    """(key, left item, right item) from two streams in key order, pairing equal keys."""
    a, b = next(left, None), next(right, None)
    while a is not None or b is not None:
        if b is None or (a is not None and left_key(a) < right_key(b)):
            yield left_key(cast(L, a)), a, None
            a = next(left, None)
        elif a is None or right_key(b) < left_key(a):
            yield right_key(b), None, b
            b = next(right, None)
        else:
            yield left_key(a), a, b
            a, b = next(left, None), next(right, None)
