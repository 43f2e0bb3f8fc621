"""Tampering with a real ledger's database is detected, and named by position, on SQLite and
PostgreSQL: the events table and the leaf table edited directly (sqlite3 / psycopg), events
reordered, one byte of a state changed, the tail truncated with and without its heads, and a
full recomputation by someone without the key, caught by a digest. Receipts check offline."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger import Address, Change, open_ledger
from ledger.bootstrap import resolve_signing_key
from ledger.errors import ConfigurationError, TamperDetected
from ledger.evidence import digest, prove, verify
from ledger.integrity import parse_receipt, receipt_json, stored_event_bytes, verify_receipt
from ledger.merkle import TreeBuilder, leaf_hash, verify_consistency
from ledger.signing import (
    digest_json,
    generate_private_key,
    load_public_key,
    parse_digest,
    public_key_pem,
    sign_tree_head,
)
from ledger.store.keyfile import public_key_path
from ledger.store.rows import to_micros


class Raw:
    """The ledger's database as someone with the file or a database login edits it: plain SQL,
    ``?`` placeholders on both engines, ``{events}`` and ``{pos}`` standing for the events
    table and its position column."""

    def __init__(self, db: str) -> None:
        self.postgres = "://" in db
        if self.postgres:
            self.connection: Any = psycopg.connect(db, autocommit=True)
        else:
            self.connection = sqlite3.connect(db, isolation_level=None)

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self.connection.execute(self._sql(statement), list(params))
        return list(cursor.fetchall()) if cursor.description else []

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self.connection.execute(self._sql(statement), list(params))

    def _sql(self, statement: str) -> str:
        position = "notification_id" if self.postgres else "rowid"
        events = "ledger_events" if self.postgres else "stored_events"
        statement = statement.replace("{pos}", position).replace("{events}", events)
        return statement.replace("?", "%s") if self.postgres else statement

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def db(db_url: str) -> Iterator[str]:
    """A ledger with 40 actions recorded over 5 saves (plus batches and their closing)."""
    ledger = open_ledger(db_url)
    for save in range(5):
        ledger.record_all(
            [
                Change(Address.parse(f"crm/contacts/{save}-{i}"), "create", values={"n": i})
                for i in range(8)
            ],
            batch=f"run-{save}",
        )
    ledger.close()
    return db_url


@pytest.fixture
def raw(db: str) -> Iterator[Raw]:
    connection = Raw(db)
    yield connection
    connection.close()


def check(db: str, **options: Any) -> Any:
    ledger = open_ledger(db, create=False)
    try:
        return verify(ledger, **options)
    finally:
        ledger.close()


def positions(raw: Raw) -> list[int]:
    return [row[0] for row in raw.rows("SELECT {pos} FROM {events} ORDER BY {pos}")]


def record_more(db: str, name: str, count: int = 3) -> None:
    ledger = open_ledger(db, create=False)
    ledger.record_all(
        [
            Change(Address.parse(f"crm/contacts/{name}-{i}"), "create", values={"n": i})
            for i in range(count)
        ],
        batch=name,
    )
    ledger.close()


def test_an_untouched_ledger_verifies_with_every_event_a_leaf(db: str, raw: Raw) -> None:
    report = check(db)
    assert report.ok
    assert report.size == len(positions(raw)) > 40
    assert report.heads_checked >= 1
    leaves = raw.rows("SELECT leaf, position FROM ledger_leaves ORDER BY leaf")
    assert [leaf for leaf, _ in leaves] == list(range(report.size))  # leaf indexes gap-free
    assert [position for _, position in leaves] == positions(raw)  # notification ids


def test_one_byte_of_a_state_changed_is_named_by_position_and_event(db: str, raw: Raw) -> None:
    target = positions(raw)[17]
    ((state, ident, version),) = raw.rows(
        "SELECT state, originator_id, originator_version FROM {events} WHERE {pos} = ?",
        [target],
    )
    changed = bytearray(state)
    changed[len(changed) // 2] ^= 0x01
    raw.execute("UPDATE {events} SET state = ? WHERE {pos} = ?", [bytes(changed), target])
    broken = check(db).first_break
    assert (broken.kind, broken.position, broken.leaf) == ("modified", target, 17)
    assert (broken.event_id.hex, broken.event_version) == (
        ident.hex if raw.postgres else ident,
        version,
    )


def test_a_deleted_event_is_named(db: str, raw: Raw) -> None:
    target = positions(raw)[9]
    raw.execute("DELETE FROM {events} WHERE {pos} = ?", [target])
    broken = check(db).first_break
    assert (broken.kind, broken.position, broken.leaf) == ("deleted", target, 9)


def test_an_inserted_event_is_named(db: str, raw: Raw) -> None:
    last = positions(raw)[-1]
    raw.execute(
        "INSERT INTO {events} (originator_id, originator_version, topic, state, {pos}) "
        "SELECT originator_id, originator_version + 1000, topic, state, ? "
        "FROM {events} WHERE {pos} = ?",
        [last + 1, last],
    )
    broken = check(db).first_break
    assert (broken.kind, broken.position) == ("inserted", last + 1)


def test_two_events_swapped_are_named_as_moved(db: str, raw: Raw) -> None:
    first, second = positions(raw)[5], positions(raw)[12]
    raw.execute("UPDATE {events} SET {pos} = -1 WHERE {pos} = ?", [first])
    raw.execute("UPDATE {events} SET {pos} = ? WHERE {pos} = ?", [first, second])
    raw.execute("UPDATE {events} SET {pos} = ? WHERE {pos} = -1", [second])
    broken = check(db).first_break
    assert (broken.kind, broken.position, broken.leaf) == ("reordered", first, 5)
    assert f"recorded at position {second}" in broken.detail


@pytest.mark.parametrize("edit", ["hash", "delete", "insert"])
def test_the_leaf_table_edited_is_named(db: str, raw: Raw, edit: str) -> None:
    target = positions(raw)[20]
    if edit == "hash":
        raw.execute("UPDATE ledger_leaves SET hash = ? WHERE position = ?", [b"\0" * 32, target])
        expected = "modified"
    elif edit == "delete":
        raw.execute("DELETE FROM ledger_leaves WHERE position = ?", [target])
        expected = "inserted"  # the event is there, its leaf is not
    else:
        raw.execute("UPDATE ledger_leaves SET leaf = leaf + 1000000 WHERE leaf >= 20")
        raw.execute(
            "INSERT INTO ledger_leaves (position, leaf, hash) VALUES (?, 20, ?)",
            [-5, b"\1" * 32],
        )
        expected = "inserted"
    broken = check(db).first_break
    assert broken.kind in (expected, "deleted")
    assert broken.leaf == 20


def test_an_event_rewritten_with_its_leaf_recomputed_breaks_the_signed_head(
    db: str, raw: Raw
) -> None:
    target = positions(raw)[3]
    ((ident, version, topic, state),) = raw.rows(
        "SELECT originator_id, originator_version, topic, state FROM {events} WHERE {pos} = ?",
        [target],
    )
    forged = bytes(state).replace(b'"n":', b'"m":')
    assert forged != bytes(state)
    raw.execute("UPDATE {events} SET state = ? WHERE {pos} = ?", [forged, target])
    stored = ident.hex if raw.postgres else ident
    recomputed = leaf_hash(stored_event_bytes(target, stored, version, topic, forged))
    raw.execute("UPDATE ledger_leaves SET hash = ? WHERE position = ?", [recomputed, target])
    broken = check(db).first_break
    assert broken.kind == "rewritten"


def test_the_tail_truncated_is_caught_by_the_latest_head(db: str, raw: Raw) -> None:
    cut = positions(raw)[30]
    raw.execute("DELETE FROM {events} WHERE {pos} >= ?", [cut])
    raw.execute("DELETE FROM ledger_leaves WHERE position >= ?", [cut])
    broken = check(db).first_break
    assert (broken.kind, broken.leaf) == ("truncated", 30)


def test_the_tail_truncated_with_its_heads_is_caught_only_by_a_digest(
    db: str, raw: Raw, tmp_path: Path
) -> None:
    ledger = open_ledger(db, create=False)
    kept = digest(ledger)
    ledger.close()
    # Back to the first head kept in the history: every later event, leaf and head removed,
    # and the latest head replaced by that one. The rest is a valid, shorter, signed log.
    ((size, root, signed_at, key, signature),) = raw.rows(
        "SELECT size, root, signed_at, key_id, signature FROM ledger_tree_heads "
        "ORDER BY size LIMIT 1"
    )
    cut = positions(raw)[size]
    raw.execute("DELETE FROM {events} WHERE {pos} >= ?", [cut])
    raw.execute("DELETE FROM ledger_leaves WHERE position >= ?", [cut])
    raw.execute("DELETE FROM ledger_tree_heads WHERE size > ?", [size])
    raw.execute(
        "UPDATE ledger_tree SET size = ?, root = ?, signed_at = ?, key_id = ?, signature = ?",
        [size, root, signed_at, key, signature],
    )
    assert check(db).ok  # what the heads alone cannot show (docs/integrity.md)
    broken = check(db, digest=kept).first_break
    assert (broken.kind, broken.leaf) == ("truncated", size)


def test_a_full_recomputation_with_a_new_key_is_caught_by_a_digest(
    db: str, raw: Raw, tmp_path: Path
) -> None:
    key_file = resolve_signing_key(db)
    assert key_file is not None
    original = load_public_key(public_key_path(key_file))
    ledger = open_ledger(db, create=False)
    kept = parse_digest(digest_json(digest(ledger).head, digest(ledger).public_key))
    ledger.close()
    # Someone with the database but not the key edits an event, recomputes every leaf, the
    # tree's state and a head signed with a key of their own, and swaps the public key file.
    target = positions(raw)[2]
    raw.execute("UPDATE {events} SET state = ? WHERE {pos} = ?", [b'{"forged":true}', target])
    builder = TreeBuilder()
    for position, ident, version, topic, state in raw.rows(
        "SELECT {pos}, originator_id, originator_version, topic, state FROM {events} ORDER BY {pos}"
    ):
        stored = ident.hex if raw.postgres else ident
        hashed = builder.append(stored_event_bytes(position, stored, version, topic, bytes(state)))
        raw.execute("UPDATE ledger_leaves SET hash = ? WHERE position = ?", [hashed, position])
    forger = generate_private_key()
    head = sign_tree_head(forger, builder.size, builder.root(), kept.head.signed_at)
    raw.execute("DELETE FROM ledger_tree_heads")
    raw.execute(
        "UPDATE ledger_tree SET frontier = ?, root = ?, signed_at = ?, key_id = ?, signature = ?",
        [
            b"".join(builder.frontier),
            head.root,
            to_micros(head.signed_at),
            head.key_id,
            head.signature,
        ],
    )
    public_key_path(key_file).write_bytes(public_key_pem(forger.public_key()))

    assert check(db).ok  # the swapped key file vouches for the forgery
    broken = check(db, public_key=original).first_break  # the ledger's real key does not
    assert broken.kind == "bad-signature"
    with pytest.raises(TamperDetected, match="not by the ledger's key"):
        check(db, digest=kept)  # and the digest kept elsewhere names the key swap


def test_a_digest_proves_the_log_only_grew(db: str) -> None:
    ledger = open_ledger(db, create=False)
    old = digest(ledger).head
    ledger.close()
    record_more(db, "later", 5)
    ledger = open_ledger(db, create=False)
    report = verify(ledger, digest=digest(ledger))
    grown = verify(ledger, digest=parse_digest(digest_json(old, digest(ledger).public_key)))
    ledger.close()
    assert report.ok and grown.ok and grown.digest_size == old.size < grown.size
    assert verify_consistency(old.size, grown.size, old.root, grown.root, grown.consistency)


def test_an_inclusion_receipt_checks_with_the_public_key_alone(db: str, raw: Raw) -> None:
    target = positions(raw)[11]
    ((ident, version, topic, state),) = raw.rows(
        "SELECT originator_id, originator_version, topic, state FROM {events} WHERE {pos} = ?",
        [target],
    )
    event = stored_event_bytes(
        target, ident.hex if raw.postgres else ident, version, topic, bytes(state)
    )
    key_file = resolve_signing_key(db)
    assert key_file is not None
    public = public_key_path(key_file).read_bytes()
    ledger = open_ledger(db, create=False)
    text = receipt_json(prove(ledger, target))
    ledger.close()
    raw.close()
    if not raw.postgres:  # no database at all
        for suffix in ("", "-wal", "-shm", ".key"):
            Path(db + suffix).unlink(missing_ok=True)
    key_file.unlink(missing_ok=True)
    receipt = parse_receipt(text)
    pub = tmp_public(public, key_file.parent)
    verify_receipt(receipt, load_public_key(pub), event)
    assert receipt.position == target and receipt.leaf_index == 11
    with pytest.raises(TamperDetected):
        verify_receipt(receipt, load_public_key(pub), event + b"x")


def tmp_public(pem: bytes, folder: Path) -> Path:
    path = folder / "auditor.pub"
    path.write_bytes(pem)
    return path


def test_a_ledger_from_before_the_tree_is_upgraded_on_open(db: str, raw: Raw) -> None:
    events = len(positions(raw))
    for table in ("ledger_leaves", "ledger_tree", "ledger_tree_heads"):
        raw.execute(f"DROP TABLE {table}")
    report = check(db)  # any command: every leaf back-filled once, then signed
    assert report.ok and report.size == events
    record_more(db, "after-upgrade")
    report = check(db)
    assert report.ok and report.size == len(positions(raw)) > events


def test_an_upgrade_without_the_key_leaves_the_back_filled_tree_unsigned_until_init(
    db: str, raw: Raw, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = resolve_signing_key(db)
    assert key_file is not None
    public = load_public_key(public_key_path(key_file))
    for table in ("ledger_leaves", "ledger_tree", "ledger_tree_heads"):
        raw.execute(f"DROP TABLE {table}")
    with monkeypatch.context() as patch:
        patch.setenv("LEDGER_SIGNING_KEY", str(tmp_path / "elsewhere.key"))
        reopened = open_ledger(db, create=False)
        report = verify(reopened, public_key=public)
        reopened.close()
    assert report.size == len(positions(raw))
    assert report.first_break is not None and report.first_break.kind == "unsigned"
    open_ledger(db).close()  # `ledger init` with the key at hand: the tree is signed
    assert check(db).ok


def test_a_write_without_the_signing_key_is_refused_and_stores_nothing(
    db: str, raw: Raw, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    before = len(positions(raw))
    with monkeypatch.context() as patch:
        patch.setenv("LEDGER_SIGNING_KEY", str(tmp_path / "nowhere.key"))
        ledger = open_ledger(db, create=False)
        with pytest.raises(ConfigurationError, match=r"nowhere\.key is missing"):
            ledger.record(Change(Address.parse("crm/contacts/x"), "create", values={"n": 1}))
        ledger.close()
    assert len(positions(raw)) == before
    assert check(db).ok


def test_a_write_with_another_ledgers_key_is_refused(
    db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = tmp_path / "other.key"
    open_ledger(str(tmp_path / "other.db"), signing_key=other).close()
    monkeypatch.setenv("LEDGER_SIGNING_KEY", str(other))
    ledger = open_ledger(db, create=False)
    with pytest.raises(ConfigurationError, match="signed by"):
        ledger.record(Change(Address.parse("crm/contacts/x"), "create", values={"n": 1}))
    ledger.close()


@pytest.mark.postgres
def test_a_postgresql_ledger_without_a_key_configured_refuses_writes_naming_the_setting(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEDGER_SIGNING_KEY")
    ledger = open_ledger(postgres_url)  # created; PostgreSQL has no default key file
    with pytest.raises(ConfigurationError, match="set LEDGER_SIGNING_KEY"):
        ledger.record(Change(Address.parse("crm/contacts/x"), "create", values={"n": 1}))
    report = verify(ledger, public_key=generate_private_key().public_key())
    ledger.close()
    assert report.ok and report.size == 0
