"""Signed tree heads and digest files: keys kept private, every altered byte refused."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.errors import ConfigurationError, LedgerError, TamperDetected
from ledger.merkle import leaf_hash
from ledger.signing import (
    DIGEST_FORMAT,
    digest_json,
    generate_private_key,
    key_id,
    load_private_key,
    load_public_key,
    parse_digest,
    public_key_hex,
    sign_tree_head,
    tree_head_bytes,
    verify_digest,
    verify_tree_head,
    write_private_key,
    write_public_key,
)

ROOT = leaf_hash(b"the root")
WHEN = datetime(2026, 11, 28, 5, 0, 0, 123456, tzinfo=UTC)


def test_a_private_key_is_written_as_pem_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger.key"
    key = generate_private_key()
    write_private_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_private_key(path)
    assert public_key_hex(loaded.public_key()) == public_key_hex(key.public_key())


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "ledger.key"
    write_private_key(path, generate_private_key())
    before = path.read_bytes()
    with pytest.raises(ConfigurationError, match="already exists"):
        write_private_key(path, generate_private_key())
    assert path.read_bytes() == before


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.key"
    write_private_key(path, generate_private_key())
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_private_key(path)


@pytest.mark.parametrize("content", [b"", b"not a key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"])
def test_a_file_that_is_not_an_ed25519_key_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "ledger.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match=r"ledger\.key is not an unencrypted Ed25519"):
        load_private_key(path)
    with pytest.raises(ConfigurationError, match="is not an Ed25519 public key"):
        load_public_key(path)


def test_a_missing_key_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"nope\.key"):
        load_private_key(tmp_path / "nope.key")


def test_the_public_key_is_exported_on_its_own(tmp_path: Path) -> None:
    key = generate_private_key()
    path = tmp_path / "ledger.pub"
    write_public_key(path, key.public_key())
    text = path.read_text()
    assert text.startswith("-----BEGIN PUBLIC KEY-----")
    assert "PRIVATE" not in text
    assert key_id(load_public_key(path)) == key_id(key.public_key())


def test_the_signed_bytes_are_the_documented_fixed_layout() -> None:
    key = "ab" * 32
    encoded = tree_head_bytes(5, ROOT, WHEN, key)
    assert len(encoded) == 106
    assert encoded[:26] == b"changeledger tree head v1\n"
    assert encoded[26:34] == (5).to_bytes(8, "big")
    assert encoded[34:66] == ROOT
    micros = int((WHEN - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 10**6 + 123456
    assert encoded[66:74] == micros.to_bytes(8, "big")
    assert encoded[74:] == bytes.fromhex(key)
    # The same instant written in another zone signs the same bytes.
    elsewhere = WHEN.astimezone(timezone(timedelta(hours=-5)))
    assert tree_head_bytes(5, ROOT, elsewhere, key) == encoded


def test_a_signed_head_verifies_with_its_public_key_only() -> None:
    key = generate_private_key()
    head = sign_tree_head(key, 5, ROOT, WHEN)
    assert head.key_id == key_id(key.public_key())
    verify_tree_head(head, key.public_key())
    with pytest.raises(TamperDetected, match="not the ledger's key"):
        verify_tree_head(head, generate_private_key().public_key())


@pytest.mark.parametrize(
    "change",
    [
        {"size": 6},
        {"size": 4},
        {"root": leaf_hash(b"another root")},
        {"signed_at": WHEN + timedelta(microseconds=1)},
        {"signature": bytes(64)},
    ],
    ids=["grown", "shrunk", "root", "time", "signature"],
)
def test_any_altered_field_of_a_head_is_refused(change: dict[str, object]) -> None:
    key = generate_private_key()
    head = sign_tree_head(key, 5, ROOT, WHEN)
    with pytest.raises(TamperDetected, match=r"tree head of \d+ leaves signed at"):
        verify_tree_head(replace(head, **change), key.public_key())  # type: ignore[arg-type]


def test_a_digest_round_trips_and_verifies_against_the_ledger_key() -> None:
    key = generate_private_key()
    head = sign_tree_head(key, 1234, ROOT, WHEN)
    text = digest_json(head, key.public_key())
    document = json.loads(text)
    assert document == {
        "format": DIGEST_FORMAT,
        "size": 1234,
        "root": ROOT.hex(),
        "signed_at": "2026-11-28T05:00:00.123456Z",
        "key_id": key_id(key.public_key()),
        "public_key": public_key_hex(key.public_key()),
        "signature": head.signature.hex(),
    }
    digest = parse_digest(text)
    assert digest.head == head
    verify_digest(digest, key.public_key())
    verify_digest(digest)


def _digest_document() -> tuple[dict[str, Any], Ed25519PrivateKey]:
    key = generate_private_key()
    head = sign_tree_head(key, 1234, ROOT, WHEN)
    return json.loads(digest_json(head, key.public_key())), key


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", 1233),
        ("size", 1235),
        ("root", leaf_hash(b"x").hex()),
        ("signed_at", "2026-11-28T05:00:00.123457Z"),
        ("signature", "00" * 64),
    ],
)
def test_an_altered_digest_is_refused(field: str, value: object) -> None:
    document, key = _digest_document()
    document[field] = value
    digest = parse_digest(json.dumps(document))
    with pytest.raises(TamperDetected, match="the signature does not match"):
        verify_digest(digest, key.public_key())


def test_a_digest_resigned_by_another_key_is_refused_against_the_ledger_key() -> None:
    _, key = _digest_document()
    forger = generate_private_key()
    forged = sign_tree_head(forger, 9999, leaf_hash(b"rewritten"), WHEN)
    digest = parse_digest(digest_json(forged, forger.public_key()))
    verify_digest(digest)  # consistent with itself: the reason to pass the ledger's key
    with pytest.raises(TamperDetected, match="not written by this ledger"):
        verify_digest(digest, key.public_key())


def test_a_digest_whose_key_id_does_not_name_its_key_is_refused() -> None:
    document, _ = _digest_document()
    document["key_id"] = "ab" * 32
    with pytest.raises(TamperDetected, match="names key abababab"):
        verify_digest(parse_digest(json.dumps(document)))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: "not json {", "is not a JSON changeledger-digest/1 file"),
        (lambda d: "[]", "is not a JSON object"),
        (lambda d: json.dumps({k: v for k, v in d.items() if k != "root"}), "misses root"),
        (lambda d: json.dumps({**d, "extra": 1}), "has unknown extra"),
        (lambda d: json.dumps(d)[:-1] + ', "size": 1}', "'size' appears twice"),
        (lambda d: json.dumps({**d, "format": "other/1"}), "format is 'other/1'"),
        (lambda d: json.dumps({**d, "size": True}), "size must be a non-negative integer"),
        (lambda d: json.dumps({**d, "size": -1}), "size must be a non-negative integer"),
        (lambda d: json.dumps({**d, "size": 12.0}), "size must be a non-negative integer"),
        (lambda d: json.dumps({**d, "root": d["root"].upper()}), "root must be 64 lowercase"),
        (lambda d: json.dumps({**d, "root": d["root"][:-2]}), "root must be 64 lowercase"),
        (lambda d: json.dumps({**d, "signature": 5}), "signature must be 128 lowercase"),
        (lambda d: json.dumps({**d, "public_key": "zz" * 32}), "public_key must be 64"),
        (lambda d: json.dumps({**d, "signed_at": "2026-11-28"}), "signed_at must be a UTC time"),
        (
            lambda d: json.dumps({**d, "signed_at": "2026-13-28T05:00:00.000000Z"}),
            "is not a real time",
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_a_malformed_digest_is_refused_naming_what_is_wrong(
    mutate: Callable[[dict[str, Any]], str], message: str
) -> None:
    document, _ = _digest_document()
    with pytest.raises(TamperDetected, match=message) as caught:
        parse_digest(mutate(document), name="digest.json")
    assert isinstance(caught.value, LedgerError)
    assert str(caught.value).startswith("digest.json")
