"""The ledger's signing key, as the store's writers use it: a file read once, on first need.

Every save signs the tree head of the log it extends, so a writer without the key must fail
before it stores anything: an unsigned save would leave a tail that no head covers, which
`verify` reports as a break. Readers never need the private key.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import ConfigurationError
from ledger.signing import (
    generate_private_key,
    key_id,
    load_private_key,
    load_public_key,
    write_private_key,
    write_public_key,
)

KEY_ENV = "LEDGER_SIGNING_KEY"  # the environment variable naming the key's file
SIGNING_KEY = "SIGNING_KEY_PATH"  # the store setting (`ledger.bootstrap.store_env`) naming it


def public_key_path(key_path: Path) -> Path:
    """Where the public key of a key file lives: ``ledger.db.key`` → ``ledger.db.pub``."""
    if key_path.suffix == ".key":
        return key_path.with_suffix(".pub")
    return key_path.with_name(key_path.name + ".pub")


def create_key_files(key_path: Path) -> bool:
    """A new key pair: the private key (0600, never overwritten) and its public key beside it.
    False when another process created the key first (its key is the ledger's)."""
    key = generate_private_key()
    if key_path.exists():
        return False
    try:
        write_private_key(key_path, key)
    except ConfigurationError:
        if key_path.exists():  # lost the race to another process creating it
            return False
        raise
    write_public_key(public_key_path(key_path), key.public_key())
    return True


class SigningKeyFile:
    """The private key at a path (None: none configured), loaded on first use and cached."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._loaded: tuple[Ed25519PrivateKey, str] | None = None

    def load(self) -> tuple[Ed25519PrivateKey, str]:
        """The key and its id; ConfigurationError says how to provide one."""
        if self._loaded is None:
            if self.path is None:
                raise ConfigurationError(
                    "this ledger has no signing key configured and every save signs the "
                    f"ledger's tree head: set {KEY_ENV} to the key's file (a PostgreSQL ledger "
                    "always needs one; `ledger init --signing-key PATH` creates it)"
                )
            if not self.path.exists():
                raise ConfigurationError(
                    f"signing key file {self.path} is missing and every save signs the "
                    f"ledger's tree head: restore it, or set {KEY_ENV} to where it is kept "
                    "(`ledger init` creates one for a ledger that has never been signed)"
                )
            key = load_private_key(self.path)
            self._loaded = (key, key_id(key.public_key()))
        return self._loaded

    def public_key(self) -> Ed25519PublicKey:
        """The public key: its file beside the key if there is one, else from the key."""
        if self.path is None:
            raise ConfigurationError(
                "no public key to verify with: give the ledger's public key (--public-key FILE)"
            )
        public = public_key_path(self.path)
        if public.exists():
            return load_public_key(public)
        if not self.path.exists():
            raise ConfigurationError(
                f"no public key to verify with: neither {public} nor {self.path} exists; give "
                "the ledger's public key (--public-key FILE)"
            )
        return self.load()[0].public_key()
