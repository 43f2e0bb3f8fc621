"""Tamper evidence over a ledger: verify its history, export a digest, prove one event.

The store keeps the Merkle tree's leaves and signed heads in each save's transaction
(`ledger.store.tree`); the pure checks are in `ledger.integrity`. These are the calls the CLI,
receipts and the HTTP API make; each reads the store in one consistent snapshot.
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.application import Ledger
from ledger.errors import NotFound
from ledger.integrity import InclusionReceipt, VerifyReport, inclusion_receipt, verify_log
from ledger.signing import Digest
from ledger.store.tree import TreeRecorder
from ledger.views import ActionView

__all__ = ["digest", "ledger_public_key", "prove", "verify"]


def verify(
    ledger: Ledger, *, digest: Digest | None = None, public_key: Ed25519PublicKey | None = None
) -> VerifyReport:
    """Recompute every leaf from the stored events and check leaves, signed heads and (given)
    a digest; the report names the first break, with the event stored there.

    ``public_key`` defaults to the ledger's own (`ledger_public_key`); pass one kept apart
    from the database to rule out a key swapped beside it. A digest not signed by that key is
    refused with TamperDetected before anything is read."""
    key = public_key if public_key is not None else ledger_public_key(ledger)
    tree = _tree(ledger)
    with tree.tree_snapshot() as snapshot:
        report = verify_log(snapshot, snapshot.heads(), key, digest)
        broken = report.first_break
        if broken is None or broken.position is None:
            return report
        event = snapshot.event_at(broken.position)
    if event is None:
        return report
    return replace(report, first_break=replace(broken, event_id=event[0], event_version=event[1]))


def digest(ledger: Ledger) -> Digest:
    """A signed head of the whole current tree, with the public key, to keep elsewhere.

    The head is the one the last save signed; a tree that no head covers yet (a ledger just
    upgraded) is signed now, which needs the signing key."""
    tree = _tree(ledger)
    head = tree.sign_head()
    return Digest(head, ledger_public_key(ledger))


def prove(ledger: Ledger, position_or_action: int | ActionView) -> InclusionReceipt:
    """The inclusion receipt of the event at a log position (or of an action, by its
    position) under the latest signed head: checkable offline with the public key alone
    (`ledger.integrity.verify_receipt`). Reads every leaf hash once (the audit path's
    subtrees): about a second per million events."""
    position = (
        position_or_action.position
        if isinstance(position_or_action, ActionView)
        else position_or_action
    )
    if position is None:
        raise NotFound("the action has no log position yet; it cannot be proved")
    tree = _tree(ledger)
    with tree.tree_snapshot() as snapshot:
        leaf, head = snapshot.leaf_at(position), snapshot.latest_head()
        if leaf is None:
            raise NotFound(f"no event is recorded at log position {position}; see `ledger history`")
        if head is not None and leaf < head.size:
            return inclusion_receipt(snapshot, leaf, head)
    head = tree.sign_head()  # no head covers it yet (a ledger just upgraded)
    with tree.tree_snapshot() as snapshot:
        return inclusion_receipt(snapshot, leaf, head)


def ledger_public_key(ledger: Ledger) -> Ed25519PublicKey:
    """The ledger's public key: the ``.pub`` file beside its signing key, else derived from
    the key (ConfigurationError asks for ``--public-key`` when there is neither)."""
    return _tree(ledger).signing_key.public_key()


def _tree(ledger: Ledger) -> TreeRecorder:
    return cast(TreeRecorder, ledger.recorder)
