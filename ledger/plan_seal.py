"""Saved plans are sealed: the file carries a digest of its content, checked when it is loaded.

A plan is saved to be reviewed and applied later, maybe by someone else; a file edited by hand
(or damaged) must not be applied as if it were the plan that was made. The seal is a SHA-256
of the plan's exact encoding (the transcoder the events use, so typed values count), so any
change to any value is found. It proves integrity, not authorship: whoever can recompute the
digest can forge it, which is why applying a plan also checks every compensation against the
ledger's own history (`ledger.rollback.check_against_history`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from ledger.errors import InvalidChange
from ledger.transcoder import OrjsonTranscoder

_CODEC = OrjsonTranscoder()


def digest(content: dict[str, Any]) -> str:
    """The seal of a plan's content."""
    return "sha256:" + hashlib.sha256(_CODEC.encode(content)).hexdigest()


def seal(kind: str, content: dict[str, Any]) -> bytes:
    """The saved form of a plan: its kind, its seal and its content."""
    return _CODEC.encode({"format": kind, "seal": digest(content), "plan": content})


def unseal(kind: str, data: bytes, made_by: str, earlier: tuple[str, ...] = ()) -> dict[str, Any]:
    """The content of a saved plan of this kind; refused if it is not one (``made_by`` names
    the command that saves them), if it is of an ``earlier`` kind this version no longer
    applies, or if it was altered after it was saved."""
    try:
        saved = _CODEC.decode(data)
    except (ValueError, TypeError, KeyError, ArithmeticError):  # not the transcoder's JSON
        saved = None
    if isinstance(saved, dict) and saved.get("format") in earlier:
        raise InvalidChange(
            f"the plan was saved by an earlier version of changeledger ({saved['format']}), "
            f"whose plans this one does not apply; plan again with `{made_by}`",
            field="plan",
        )
    if (
        not isinstance(saved, dict)
        or saved.get("format") != kind
        or not isinstance(saved.get("plan"), dict)
        or not isinstance(saved.get("seal"), str)
    ):
        raise InvalidChange(f"not a plan saved by `{made_by}`", field="plan")
    if digest(saved["plan"]) != saved["seal"]:
        raise InvalidChange(
            "the plan was altered after it was saved (its content does not match its seal); "
            f"plan again with `{made_by}`",
            field="plan",
        )
    return saved["plan"]
