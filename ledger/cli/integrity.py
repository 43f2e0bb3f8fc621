"""`ledger verify | digest`: check that the stored history is the one that was written, and
export a signed head to keep elsewhere (docs/integrity.md)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ledger.bootstrap import open_ledger
from ledger.cli.base import emit, verb
from ledger.errors import ConfigurationError, TamperDetected
from ledger.evidence import digest as take_digest
from ledger.evidence import verify as verify_ledger
from ledger.integrity import VerifyReport
from ledger.signing import digest_json, load_public_key, parse_digest
from ledger.store.keyfile import KEY_ENV


@verb("verify")
@click.option(
    "--digest",
    "digest_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A digest taken earlier (`ledger digest`): also prove the log only grew since.",
)
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The ledger's public key (PEM) [default: the .pub file beside its signing key].",
)
def verify(
    db: str | None, as_json: bool, digest_file: Path | None, public_key: Path | None
) -> None:
    """Recompute every event's hash and the tree, check every signed head (and a digest); exit 1
    naming the first position where the history breaks."""
    digest = None
    if digest_file is not None:
        digest = parse_digest(_read(digest_file, "--digest"), name=f"digest {digest_file}")
    key = None if public_key is None else load_public_key(public_key)
    report = verify_ledger(open_ledger(db, create=False), digest=digest, public_key=key)
    emit(as_json, report.to_json(), lambda: _show(report))
    if report.first_break is not None:
        raise TamperDetected(report.first_break.describe())


@verb("digest")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the digest to this new file (default: print it).",
)
@click.option(
    "--signing-key",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=KEY_ENV,
    help=f"The ledger's signing key, needed only if no head covers the whole log [env {KEY_ENV}].",
)
def digest(db: str | None, as_json: bool, out: Path | None, signing_key: Path | None) -> None:
    """A signed head of the whole log with the public key: keep it away from the database, then
    `ledger verify --digest FILE` proves the log only grew since."""
    taken = take_digest(open_ledger(db, create=False, signing_key=signing_key))
    text = digest_json(taken.head, taken.public_key)
    if out is None:
        click.echo(text, nl=False)
        return
    _write_new(out, text)
    payload = {"out": str(out), "size": taken.head.size, "root": taken.head.root.hex()}
    emit(
        as_json,
        payload,
        lambda: click.echo(
            f"digest of {taken.head.size} events written to {out} (root {taken.head.root.hex()})"
        ),
    )


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigurationError(f"{option} {path}: {error.strerror}") from None


def _write_new(path: Path, text: str) -> None:
    """A digest is evidence: never overwrite one."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise ConfigurationError(
            f"--out {path} already exists; a digest is evidence, so choose a new file name"
        ) from None
    except OSError as error:
        raise ConfigurationError(f"--out {path}: {error.strerror}") from None
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def _show(report: VerifyReport) -> None:
    if report.first_break is not None:
        click.echo(f"history NOT intact: checked {report.size} events before the break")
        return
    click.echo(
        f"history intact: {report.size} events, root {report.root.hex()}, "
        f"{report.heads_checked} signed heads checked"
    )
    if report.digest_size is not None:
        click.echo(
            f"the log extends the digest of {report.digest_size} events "
            f"(consistency proof of {len(report.consistency)} hashes)"
        )
