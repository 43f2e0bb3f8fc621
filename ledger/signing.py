"""Signed tree heads (Ed25519) and the digest file that carries one away from the database.

A head binds a tree size and root to a time and a key. What is signed is `tree_head_bytes`,
a fixed-length binary encoding (106 bytes), so no parser decides what a signature covers:

    offset  length  field
         0      26  b"changeledger tree head v1\\n"   (domain separation: no other message of
                                                     ours, or of anyone, signs these bytes)
        26       8  size: number of leaves, unsigned big-endian
        34      32  root: MTH of the first `size` leaves (RFC 6962)
        66       8  signed_at: microseconds since 1970-01-01T00:00:00Z, signed big-endian
        74      32  key id: SHA-256 of the public key's DER SubjectPublicKeyInfo (as in RFC 6962
                    §3.2's LogID), so a signature cannot be re-attributed to another key

The digest file (`ledger digest` writes it) is JSON with exactly these members:

    {"format": "changeledger-digest/1", "size": 123, "root": "<64 hex>",
     "signed_at": "2026-11-28T05:00:00.000000Z", "key_id": "<64 hex>",
     "public_key": "<64 hex: raw Ed25519 key>", "signature": "<128 hex>"}

Parsing is strict (no unknown, missing or duplicate members, lowercase hex, UTC time) because a
digest is evidence: anything that does not parse exactly is refused, never repaired.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import ConfigurationError, TamperDetected

__all__ = [
    "DIGEST_FORMAT",
    "HEAD_FIELDS",
    "HEX64",
    "Digest",
    "SignedTreeHead",
    "digest_json",
    "generate_private_key",
    "head_members",
    "hex_member",
    "key_id",
    "load_private_key",
    "load_public_key",
    "parse_digest",
    "parse_head_members",
    "public_key_hex",
    "public_key_pem",
    "read_json_object",
    "sign_tree_head",
    "tree_head_bytes",
    "verify_digest",
    "verify_tree_head",
    "write_private_key",
    "write_public_key",
]

DIGEST_FORMAT = "changeledger-digest/1"
_DOMAIN = b"changeledger tree head v1\n"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
HEAD_FIELDS = ("size", "root", "signed_at", "key_id", "signature")
_DIGEST_FIELDS = ("format", "size", "root", "signed_at", "key_id", "public_key", "signature")


@dataclass(frozen=True)
class SignedTreeHead:
    """The tree of the first `size` leaves had `root` at `signed_at`, says the key `key_id`."""

    size: int
    root: bytes
    signed_at: datetime
    key_id: str
    signature: bytes

    def signed_bytes(self) -> bytes:
        """The canonical encoding the signature covers."""
        return tree_head_bytes(self.size, self.root, self.signed_at, self.key_id)


@dataclass(frozen=True)
class Digest:
    """A signed head with the public key it claims, as read from a digest file."""

    head: SignedTreeHead
    public_key: Ed25519PublicKey


def tree_head_bytes(size: int, root: bytes, signed_at: datetime, key: str) -> bytes:
    """The 106 bytes a tree head signature covers (layout in the module docstring)."""
    if not 0 <= size < 1 << 64:
        raise ValueError(f"tree size {size} is out of range")
    if len(root) != 32:
        raise ValueError("a tree root is 32 bytes")
    if signed_at.tzinfo is None:
        raise ValueError("signed_at must carry a time zone")
    if not HEX64.fullmatch(key):
        raise ValueError("a key id is 64 lowercase hex digits")
    micros = (signed_at - _EPOCH) // timedelta(microseconds=1)
    return (
        _DOMAIN
        + size.to_bytes(8, "big")
        + root
        + micros.to_bytes(8, "big", signed=True)
        + bytes.fromhex(key)
    )


def generate_private_key() -> Ed25519PrivateKey:
    """A new signing key for a ledger."""
    return Ed25519PrivateKey.generate()


def key_id(public_key: Ed25519PublicKey) -> str:
    """SHA-256 of the key's DER SubjectPublicKeyInfo, in hex (RFC 6962's LogID)."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def public_key_hex(public_key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key in hex, as a digest carries it."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    """The public key alone, in PEM, to hand to whoever checks digests and receipts."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write the key as unencrypted PKCS#8 PEM, readable by its owner only (0600).

    Refuses to replace an existing file: heads signed with the old key could no longer be
    checked by anyone who trusts only the new one. The key is written to a temporary file
    and linked into place, so a reader never sees half a key and of two processes creating
    one at once exactly one wins (the other gets ConfigurationError "already exists").
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if path.exists():
        raise _key_exists(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), 0o600)  # the umask can only remove bits; make sure anyway
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        os.link(temporary, path)
    except FileExistsError:
        raise _key_exists(path) from None
    except OSError as error:
        raise ConfigurationError(f"signing key file {path}: {error.strerror}") from None
    finally:
        temporary.unlink(missing_ok=True)


def _key_exists(path: Path) -> ConfigurationError:
    return ConfigurationError(
        f"signing key file {path} already exists; refusing to overwrite a signing key "
        "(move it away first if you really mean to replace it)"
    )


def write_public_key(path: Path, public_key: Ed25519PublicKey) -> None:
    """Write the public key alone, in PEM (to a temporary file first, then renamed)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(public_key_pem(public_key))
        temporary.replace(path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ConfigurationError(f"public key file {path}: {error.strerror}") from None


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a signing key written by `write_private_key`; refuses one others can read."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as error:
        raise ConfigurationError(f"signing key file {path}: {error.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"signing key file {path} can be read by others (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(
            f"signing key file {path} is not an unencrypted Ed25519 private key in PEM"
        )
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a public key in PEM."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigurationError(f"public key file {path}: {error.strerror}") from None
    key = parse_public_key(data)
    if key is None:
        raise ConfigurationError(f"public key file {path} is not an Ed25519 public key in PEM")
    return key


def parse_public_key(data: bytes) -> Ed25519PublicKey | None:
    """An Ed25519 public key in PEM, or None when ``data`` is not one."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        return None
    return key if isinstance(key, Ed25519PublicKey) else None


def sign_tree_head(
    private_key: Ed25519PrivateKey, size: int, root: bytes, signed_at: datetime
) -> SignedTreeHead:
    """Sign the head of the tree of `size` leaves; the time is kept to the microsecond, in UTC."""
    signed_at = signed_at.astimezone(UTC)
    key = key_id(private_key.public_key())
    signature = private_key.sign(tree_head_bytes(size, root, signed_at, key))
    return SignedTreeHead(size, root, signed_at, key, signature)


def verify_tree_head(head: SignedTreeHead, public_key: Ed25519PublicKey) -> None:
    """Raise TamperDetected unless `public_key` signed exactly this head."""
    expected = key_id(public_key)
    if head.key_id != expected:
        raise TamperDetected(
            f"tree head of {head.size} leaves signed at {_format_time(head.signed_at)} names key "
            f"{head.key_id[:16]}…, not the ledger's key {expected[:16]}…; "
            "it was signed by another key or altered"
        )
    try:
        public_key.verify(head.signature, head.signed_bytes())
    except (InvalidSignature, ValueError):
        raise TamperDetected(
            f"tree head of {head.size} leaves signed at {_format_time(head.signed_at)}: "
            "the signature does not match its size, root and time; the head was altered"
        ) from None


def digest_json(head: SignedTreeHead, public_key: Ed25519PublicKey) -> str:
    """The digest file's text for a signed head."""
    document = {"format": DIGEST_FORMAT, **head_members(head)}
    document["public_key"] = public_key_hex(public_key)
    document["signature"] = document.pop("signature")  # keep the documented member order
    return json.dumps(document, indent=2) + "\n"


def parse_digest(text: str | bytes, *, name: str = "digest") -> Digest:
    """Read a digest file exactly; TamperDetected names the first member that is wrong.

    This checks the form only: `verify_digest` checks the signature and the key.
    """
    document = read_json_object(text, name, DIGEST_FORMAT, _DIGEST_FIELDS)
    head = parse_head_members(document, name)
    raw_key = hex_member(document, "public_key", HEX64, name)
    return Digest(head, Ed25519PublicKey.from_public_bytes(raw_key))  # any 32 bytes parse


def head_members(head: SignedTreeHead) -> dict[str, Any]:
    """A signed head as JSON members (hex, and the time in UTC to the microsecond)."""
    return {
        "size": head.size,
        "root": head.root.hex(),
        "signed_at": _format_time(head.signed_at),
        "key_id": head.key_id,
        "signature": head.signature.hex(),
    }


def parse_head_members(document: dict[str, Any], name: str) -> SignedTreeHead:
    """The signed head in `document`'s members, each checked exactly (form, not signature)."""
    size = document["size"]
    if type(size) is not int or not 0 <= size < 1 << 63:
        raise TamperDetected(f"{name}: size must be a non-negative integer, got {size!r}")
    root = hex_member(document, "root", HEX64, name)
    key = hex_member(document, "key_id", HEX64, name)
    signature = hex_member(document, "signature", _HEX128, name)
    signed_at = document["signed_at"]
    if not isinstance(signed_at, str) or not _TIME.fullmatch(signed_at):
        raise TamperDetected(
            f"{name}: signed_at must be a UTC time like 2026-11-28T05:00:00.000000Z, "
            f"got {signed_at!r}"
        )
    try:
        when = datetime.strptime(signed_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise TamperDetected(f"{name}: signed_at {signed_at!r} is not a real time") from None
    return SignedTreeHead(size, root, when, key.hex(), signature)


def read_json_object(
    text: str | bytes, name: str, file_format: str, fields: Sequence[str]
) -> dict[str, Any]:
    """A JSON object with exactly `fields` (no duplicates) whose "format" is `file_format`."""
    try:
        document = json.loads(text, object_pairs_hook=_refuse_duplicates)
    except (ValueError, UnicodeDecodeError) as error:
        raise TamperDetected(f"{name} is not a JSON {file_format} file: {error}") from None
    if not isinstance(document, dict):
        raise TamperDetected(f"{name} is not a JSON object with the members of {file_format}")
    missing = [field for field in fields if field not in document]
    unknown = sorted(set(document) - set(fields))
    if missing or unknown:
        problem = f"misses {', '.join(missing)}" if missing else f"has unknown {', '.join(unknown)}"
        raise TamperDetected(f"{name} {problem}; it is not a {file_format} file")
    if document["format"] != file_format:
        raise TamperDetected(f"{name}: format is {document['format']!r}, expected {file_format!r}")
    return document


def verify_digest(digest: Digest, trusted_key: Ed25519PublicKey | None = None) -> None:
    """Raise TamperDetected unless the digest's head is signed by its key, and that key is
    `trusted_key` when one is given.

    Without a trusted key this only shows the digest was not altered since it was signed: a
    forger can sign a digest of their own with a key of their own. Pass the ledger's key.
    """
    if trusted_key is not None and public_key_hex(digest.public_key) != public_key_hex(trusted_key):
        raise TamperDetected(
            f"the digest is signed by key {key_id(digest.public_key)[:16]}…, not by the ledger's "
            f"key {key_id(trusted_key)[:16]}…; it was not written by this ledger"
        )
    verify_tree_head(digest.head, digest.public_key)


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def hex_member(document: dict[str, Any], field: str, shape: re.Pattern[str], name: str) -> bytes:
    """The bytes of a member that must be lowercase hex of the given shape."""
    value = document[field]
    if not isinstance(value, str) or not shape.fullmatch(value):
        digits = shape.pattern.rsplit("{", 1)[1].rstrip("}")
        raise TamperDetected(
            f"{name}: {field} must be {digits} lowercase hex digits, got {value!r:.80}"
        )
    return bytes.fromhex(value)


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"member {key!r} appears twice")
        document[key] = value
    return document
