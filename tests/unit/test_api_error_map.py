"""The one error mapping covers the whole error tree: every LedgerError the library raises
has a status of its own, listed in the OpenAPI document (an error added later fails here
until it is given one)."""

from __future__ import annotations

import inspect

import pytest

from ledger import errors
from ledger.api.app import PROBLEMS
from ledger.api.errors import STATUSES

TREE = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.LedgerError) and cls is not errors.LedgerError
]


@pytest.mark.parametrize("error", TREE, ids=lambda cls: cls.__name__)
def test_every_error_of_the_tree_has_a_status_of_its_own(error):
    status, kind = next(STATUSES[c] for c in error.__mro__ if c in STATUSES)
    assert (status, kind) != (400, "error"), f"{error.__name__} falls back to the root's 400"
    assert status in PROBLEMS


def test_the_decisions_the_docs_name():
    assert STATUSES[errors.LanePaused] == (423, "paused")
    assert STATUSES[errors.ApprovalRefused] == (403, "forbidden")
    assert STATUSES[errors.ApprovalRequired] == (409, "conflict")
    assert STATUSES[errors.StaleWrite] == STATUSES[errors.BeforeMismatch] == (409, "stale")
    assert STATUSES[errors.ReenableRefused] == (409, "unproved")  # a flow branches on it
