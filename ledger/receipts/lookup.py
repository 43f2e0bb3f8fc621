"""Finding the action a user names: a fingerprint, a unique prefix of one, or ENTITY@VERSION."""

from __future__ import annotations

import re

from ledger.application import Ledger
from ledger.domain import Address
from ledger.errors import InvalidChange, NotFound
from ledger.views import ActionView

_AT_VERSION = re.compile(r"^(?P<address>.+/.+/.+)@(?P<version>[0-9]+)$")
_SHOWN = 10  # candidates named when a prefix is ambiguous


def find_action(ledger: Ledger, action: str) -> ActionView:
    """The action a user names: its fingerprint, a unique prefix of it (with or without the
    ``sha256:``), or ``system/collection/key@VERSION``."""
    text = action.strip()
    if not text:
        raise InvalidChange("name an action: a fingerprint (or its prefix) or ENTITY@VERSION")
    exact = ledger.index.find_fingerprints([text])
    if text in exact:
        return ledger._action(exact[text].entity_id, exact[text].version)
    at_version = _AT_VERSION.match(text)
    if at_version is not None:
        address = Address.parse(at_version["address"])
        version = int(at_version["version"])
        highest = ledger.index.versions_until(address.entity_id, None)[0]
        if highest == 0:
            raise NotFound(f"{address} has no recorded actions")
        if not 1 <= version <= highest:
            raise NotFound(f"{address} has versions 1 to {highest}, not {version}")
        return ledger._action(address.entity_id, version)
    # No index over fingerprint prefixes: one pass over the index's actions.
    prefixes = (text, f"sha256:{text}")
    found = [row for row in ledger.index.actions_matching() if row.fingerprint.startswith(prefixes)]
    if not found:
        raise NotFound(
            f"no action has fingerprint {text!r} or one starting with it; see "
            "`ledger history ENTITY` for fingerprints, or name it as ENTITY@VERSION"
        )
    if len(found) > 1:
        named = ", ".join(
            f"{row.fingerprint} ({row.system}/{row.collection}/{row.key}@{row.version})"
            for row in found[:_SHOWN]
        )
        more = f" and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
        raise InvalidChange(
            f"{text!r} starts {len(found)} fingerprints: {named}{more}; give more of it",
            field="action",
        )
    (row,) = found
    return ledger._action(row.entity_id, row.version)
