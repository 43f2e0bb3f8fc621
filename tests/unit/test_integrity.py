"""verify_log names the first place the history breaks, and how, for every kind of tampering;
receipts check offline with the public key alone. Run on an in-memory log here; the store
wiring runs the same cases on real SQLite and PostgreSQL files."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import integrity, merkle
from ledger.errors import TamperDetected
from ledger.integrity import (
    InclusionReceipt,
    RecordedLeaf,
    StoredEvent,
    VerifyReport,
    inclusion_receipt,
    parse_receipt,
    receipt_json,
    stored_event_bytes,
    verify_log,
    verify_receipt,
)
from ledger.merkle import PAGE, TreeBuilder, leaf_hash, verify_consistency
from ledger.signing import (
    SignedTreeHead,
    digest_json,
    generate_private_key,
    parse_digest,
    public_key_pem,
    sign_tree_head,
)

START = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)


class MemoryLog:
    """A log as a store keeps it: event rows, a leaf row per event and a head per save, all
    written together; positions step by 2, as a PostgreSQL sequence can leave gaps."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key
        self.events: dict[int, bytes] = {}
        self.recorded: list[RecordedLeaf] = []
        self.heads: list[SignedTreeHead] = []
        self.builder = TreeBuilder()
        self.clock = (START + timedelta(seconds=i) for i in count())

    def save(self, how_many: int) -> None:
        """One save transaction: events, their leaves, and a signed head."""
        for _ in range(how_many):
            position = 2 * (len(self.recorded) + 1)
            data = event_bytes(position)
            self.events[position] = data
            self.recorded.append(RecordedLeaf(position, self.builder.append(data)))
        self.heads.append(
            sign_tree_head(self.key, self.builder.size, self.builder.root(), next(self.clock))
        )

    def leaf_count(self) -> int:
        return len(self.recorded)

    def leaves(self, start: int, stop: int) -> Sequence[RecordedLeaf]:
        return self.recorded[start:stop]

    def stored_events(self) -> Iterator[StoredEvent]:
        for position in sorted(self.events):
            yield StoredEvent(position, self.events[position])

    def digest(self) -> str:
        return digest_json(self.heads[-1], self.key.public_key())

    def recompute_leaves(self) -> None:
        """What someone who can write the tables but lacks the key does after an edit."""
        self.recorded = [
            RecordedLeaf(position, leaf_hash(self.events[position]))
            for position in sorted(self.events)
        ]


def event_bytes(position: int, state: bytes = b"") -> bytes:
    payload = state or b'{"field":"lifecycle_stage","after":"customer"}' * 14
    return stored_event_bytes(position, f"contact-{position}", 1, "ledger.domain:Changed", payload)


@pytest.fixture(autouse=True, params=[PAGE, 3], ids=["one page", "pages of 3"])
def page_size(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Every case runs on one page and across page boundaries (heads and breaks at edges)."""
    monkeypatch.setattr(integrity, "PAGE", request.param)
    monkeypatch.setattr(merkle, "PAGE", request.param)
    return int(request.param)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return generate_private_key()


@pytest.fixture
def log(key: Ed25519PrivateKey) -> MemoryLog:
    log = MemoryLog(key)
    for size in (3, 5, 1, 7, 4):
        log.save(size)
    return log


def verify(log: MemoryLog, digest: str | None = None, **options: bool) -> VerifyReport:
    parsed = None if digest is None else parse_digest(digest)
    return verify_log(log, log.heads, log.key.public_key(), parsed, **options)


def test_an_untouched_log_verifies(log: MemoryLog) -> None:
    report = verify(log)
    assert report.ok
    assert report.size == 20
    assert report.heads_checked == 5
    assert report.root == log.builder.root()


def test_a_modified_event_is_named_by_its_position(log: MemoryLog) -> None:
    log.events[14] = event_bytes(14, b'{"field":"lifecycle_stage","after":"lead"}')
    broken = verify(log).first_break
    assert broken is not None
    assert (broken.kind, broken.position, broken.leaf) == ("modified", 14, 6)
    assert "position 14" in broken.detail


def test_a_single_flipped_byte_is_caught(log: MemoryLog) -> None:
    data = bytearray(log.events[30])
    data[-1] ^= 1
    log.events[30] = bytes(data)
    broken = verify(log).first_break
    assert broken is not None
    assert (broken.kind, broken.position) == ("modified", 30)


def test_a_deleted_event_is_named_by_its_position(log: MemoryLog) -> None:
    del log.events[8]
    broken = verify(log).first_break
    assert broken is not None
    assert (broken.kind, broken.position, broken.leaf) == ("deleted", 8, 3)


def test_the_deleted_last_event_is_caught(log: MemoryLog) -> None:
    del log.events[40]
    broken = verify(log).first_break
    assert broken is not None
    assert (broken.kind, broken.position) == ("deleted", 40)


def test_an_inserted_event_is_named_by_its_position(log: MemoryLog) -> None:
    log.events[11] = event_bytes(11)
    broken = verify(log).first_break
    assert broken is not None
    assert (broken.kind, broken.position) == ("inserted", 11)


def test_an_event_appended_without_a_leaf_is_caught(log: MemoryLog) -> None:
    log.events[99] = event_bytes(99)
    broken = verify(log).first_break
    assert broken is not None
    assert (broken.kind, broken.position) == ("inserted", 99)


def test_reordered_events_are_named_as_moved(log: MemoryLog) -> None:
    log.events[10], log.events[24] = log.events[24], log.events[10]
    broken = verify(log).first_break
    assert broken is not None
    assert (broken.kind, broken.position) == ("reordered", 10)
    assert "recorded at position 24" in broken.detail


def test_an_edit_with_its_leaf_hash_recomputed_breaks_the_signed_head(log: MemoryLog) -> None:
    log.events[14] = event_bytes(14, b"rewritten")
    log.recompute_leaves()
    broken = verify(log).first_break
    assert broken is not None
    # Leaf 6 is in the second save (leaves 3..7): the head signed after it no longer matches.
    assert (broken.kind, broken.leaf) == ("rewritten", 7)
    assert "between leaves 3 and 7" in broken.detail


def test_a_deletion_with_the_leaves_renumbered_breaks_the_signed_head(log: MemoryLog) -> None:
    del log.events[30]
    log.recompute_leaves()
    log.heads = [head for head in log.heads if head.size <= 19]
    broken = verify(log).first_break
    assert broken is not None
    assert broken.kind == "rewritten"


def test_a_head_with_an_altered_root_fails_its_signature(log: MemoryLog) -> None:
    log.heads[2] = replace(log.heads[2], root=leaf_hash(b"forged"))
    broken = verify(log).first_break
    assert broken is not None
    assert (broken.kind, broken.leaf) == ("bad-signature", 8)
    assert "signature does not match" in broken.detail


def test_a_head_signed_by_another_key_is_refused(log: MemoryLog) -> None:
    other = generate_private_key()
    head = log.heads[1]
    log.heads[1] = sign_tree_head(other, head.size, head.root, head.signed_at)
    broken = verify(log).first_break
    assert broken is not None
    assert broken.kind == "bad-signature"
    assert "not the ledger's key" in broken.detail


def test_the_first_break_in_log_order_is_the_one_reported(log: MemoryLog) -> None:
    log.heads[3] = replace(log.heads[3], root=leaf_hash(b"forged"))  # covers leaf 15
    del log.events[6]  # leaf 2
    broken = verify(log).first_break
    assert broken is not None
    assert (broken.kind, broken.position) == ("deleted", 6)


def test_truncation_leaving_a_head_behind_is_caught(log: MemoryLog) -> None:
    for leaf in log.recorded[16:]:
        del log.events[leaf.position]
    log.recorded = log.recorded[:16]
    broken = verify(log).first_break
    assert broken is not None
    assert (broken.kind, broken.leaf) == ("truncated", 16)
    assert "covers 20 leaves but the log holds only 16" in broken.detail


def test_a_truncated_tail_with_its_heads_is_caught_only_by_a_digest(log: MemoryLog) -> None:
    digest = log.digest()
    for leaf in log.recorded[16:]:
        del log.events[leaf.position]
    log.recorded = log.recorded[:16]
    log.heads = log.heads[:-1]
    assert verify(log).ok  # what a digest kept elsewhere is for
    broken = verify(log, digest).first_break
    assert broken is not None
    assert broken.kind == "truncated"


def test_removed_heads_leave_an_unsigned_tail(log: MemoryLog) -> None:
    log.heads = log.heads[:2]
    broken = verify(log).first_break
    assert broken is not None
    assert (broken.kind, broken.leaf) == ("unsigned", 8)
    assert verify(log, allow_unsigned_tail=True).ok


def test_a_full_recomputation_without_the_key_is_caught(log: MemoryLog) -> None:
    digest = log.digest()
    log.events[4] = event_bytes(4, b"rewritten")
    log.recompute_leaves()
    log.heads = []  # without the key no head can be made for the rewritten tree
    alone = verify(log).first_break
    assert alone is not None
    assert alone.kind == "unsigned"
    broken = verify(log, digest).first_break
    assert broken is not None
    assert (broken.kind, broken.leaf) == ("not-an-extension", 19)


def test_a_full_rewrite_by_a_key_holder_is_caught_only_by_the_digest(
    key: Ed25519PrivateKey,
) -> None:
    log = MemoryLog(key)
    for size in (4, 4, 4):
        log.save(size)
    digest = log.digest()
    forged = MemoryLog(key)  # someone holding the database and the key rebuilds everything
    forged.save(4)
    forged.events[2] = event_bytes(2, b"rewritten")
    forged.recompute_leaves()
    forged.builder = TreeBuilder()
    forged.builder.extend_hashes(leaf.hash for leaf in forged.recorded)
    forged.heads = []
    forged.save(0)
    forged.save(8)
    assert verify(forged).ok  # proves nothing against someone who holds both
    broken = verify(forged, digest).first_break
    assert broken is not None
    assert (broken.kind, broken.leaf) == ("not-an-extension", 11)


def test_a_log_that_only_grew_since_the_digest_verifies_with_a_consistency_proof(
    log: MemoryLog,
) -> None:
    digest = parse_digest(log.digest())
    log.save(9)
    report = verify_log(log, log.heads, log.key.public_key(), digest)
    assert report.ok
    assert report.digest_size == 20
    assert report.size == 29
    assert verify_consistency(20, 29, digest.head.root, report.root, report.consistency)


def test_an_altered_or_foreign_digest_is_refused_before_reading(log: MemoryLog) -> None:
    text = log.digest().replace('"size": 20', '"size": 19')
    with pytest.raises(TamperDetected, match="signature does not match"):
        verify(log, text)
    other = generate_private_key()
    foreign = digest_json(sign_tree_head(other, 20, log.builder.root(), START), other.public_key())
    with pytest.raises(TamperDetected, match="not written by this ledger"):
        verify(log, foreign)


@settings(max_examples=40, deadline=None)
@given(
    saves=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=6),
    data=st.data(),
)
def test_any_single_edit_or_deletion_is_named_at_its_position(
    saves: list[int], data: st.DataObject
) -> None:
    log = MemoryLog(generate_private_key())
    for size in saves:
        log.save(size)
    victim = data.draw(st.sampled_from(sorted(log.events)))
    if data.draw(st.booleans()):
        log.events[victim] = log.events[victim] + b" "
        kind = "modified"
    else:
        del log.events[victim]
        kind = "deleted"
    broken = verify(log).first_break
    assert broken is not None
    assert (broken.kind, broken.position) == (kind, victim)


# Receipts: checked with nothing but the exported public key.


def public_key_only(key: Ed25519PrivateKey) -> Ed25519PublicKey:
    loaded = load_pem_public_key(public_key_pem(key.public_key()))
    assert isinstance(loaded, Ed25519PublicKey)
    return loaded


def test_a_receipt_verifies_offline_with_only_the_public_key(log: MemoryLog) -> None:
    head = log.heads[-1]
    public_key = public_key_only(log.key)
    for index in range(head.size):
        receipt = inclusion_receipt(log, index, head)
        position = log.recorded[index].position
        assert receipt.position == position
        verify_receipt(receipt, public_key, log.events[position])


def test_a_receipt_under_an_older_head_still_verifies(log: MemoryLog) -> None:
    receipt = inclusion_receipt(log, 2, log.heads[0])
    log.save(5)
    verify_receipt(receipt, public_key_only(log.key))


@pytest.mark.parametrize(
    "alter",
    [
        lambda r: replace(r, leaf_index=r.leaf_index + 1),
        lambda r: replace(r, leaf_hash=leaf_hash(b"another event")),
        lambda r: replace(r, proof=r.proof[:-1]),
        lambda r: replace(r, proof=(leaf_hash(b"x"), *r.proof[1:])),
        lambda r: replace(r, head=replace(r.head, size=r.head.size + 1)),
    ],
    ids=["index", "leaf", "short proof", "proof", "head"],
)
def test_an_altered_receipt_is_refused(
    log: MemoryLog, alter: Callable[[InclusionReceipt], InclusionReceipt]
) -> None:
    receipt = alter(inclusion_receipt(log, 5, log.heads[-1]))
    with pytest.raises(TamperDetected, match="was altered"):
        verify_receipt(receipt, public_key_only(log.key))


def test_a_receipt_does_not_vouch_for_other_bytes(log: MemoryLog) -> None:
    receipt = inclusion_receipt(log, 5, log.heads[-1])
    with pytest.raises(TamperDetected, match="do not hash to the receipt's leaf"):
        verify_receipt(receipt, public_key_only(log.key), b"some other event")


def test_a_receipt_is_refused_under_another_key(log: MemoryLog) -> None:
    receipt = inclusion_receipt(log, 5, log.heads[-1])
    with pytest.raises(TamperDetected, match="not the ledger's key"):
        verify_receipt(receipt, generate_private_key().public_key())


def test_a_receipt_needs_a_head_that_covers_its_leaf(log: MemoryLog) -> None:
    with pytest.raises(TamperDetected, match="not covered by the tree head of 3 leaves"):
        inclusion_receipt(log, 3, log.heads[0])


def test_a_receipt_file_round_trips_and_verifies_with_only_the_public_key(log: MemoryLog) -> None:
    receipt = inclusion_receipt(log, 11, log.heads[-1])
    text = receipt_json(receipt)
    assert parse_receipt(text) == receipt
    verify_receipt(parse_receipt(text), public_key_only(log.key), log.events[24])


def test_an_edited_receipt_file_is_refused(log: MemoryLog) -> None:
    receipt = inclusion_receipt(log, 11, log.heads[-1])
    document = json.loads(receipt_json(receipt))
    document["proof"][1] = leaf_hash(b"forged").hex()
    with pytest.raises(TamperDetected, match="was altered"):
        verify_receipt(parse_receipt(json.dumps(document)), public_key_only(log.key))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "changeledger-digest/1"}, "format is 'changeledger-digest/1'"),
        ({"leaf_index": -1}, "leaf_index must be a non-negative integer"),
        ({"leaf_hash": "AB" * 32}, "leaf_hash must be 64 lowercase hex"),
        ({"proof": "00"}, "proof must be a list"),
        ({"proof": ["00"]}, "proof must be 64 lowercase hex"),
        ({"head": {"size": 1}}, "head must have exactly the members"),
        ({"extra": True}, "has unknown extra"),
    ],
)
def test_a_malformed_receipt_file_is_refused(
    log: MemoryLog, change: dict[str, object], message: str
) -> None:
    document = json.loads(receipt_json(inclusion_receipt(log, 0, log.heads[-1])))
    with pytest.raises(TamperDetected, match=message):
        parse_receipt(json.dumps({**document, **change}), name="receipt.json")
