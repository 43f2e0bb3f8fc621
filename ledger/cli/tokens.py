"""`ledger token create | list | revoke`: the bearer tokens of the HTTP API."""

from __future__ import annotations

import click

from ledger.cli.base import actor_option, common, emit, errors_as_messages, main, open_db, table
from ledger.tokens import SCOPES, create_token, list_tokens, parse_scopes, revoke_token


@main.group("token")
def token() -> None:
    """Tokens for the HTTP API (`ledger serve`): `create` prints the secret once."""


@token.command("create")
@common
@errors_as_messages
@actor_option
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    metavar="SCOPE[,SCOPE...]",
    help=f"What it may do: {', '.join(SCOPES)} (admin: all of them).",
)
@click.option("--workflow", "workflows", multiple=True, help="Only this workflow (repeatable).")
@click.option("--system", "systems", multiple=True, help="Only this system (repeatable).")
def create(
    db: str | None,
    as_json: bool,
    actor: str,
    name: str,
    scopes: tuple[str, ...],
    workflows: tuple[str, ...],
    systems: tuple[str, ...],
) -> None:
    """Create a token NAME (recorded as the actor of what it records); its secret is shown
    once, only its SHA-256 digest is kept."""
    issued = create_token(
        open_db(db),
        name,
        parse_scopes(scopes),
        workflows=workflows,
        systems=systems,
        actor=actor,
    )

    def human() -> None:
        click.echo(f"token {name} created; its secret, shown this once:")
        click.echo(issued.secret)
        click.echo("send it as the header  Authorization: Bearer <secret>")

    emit(as_json, issued.to_json(), human)


@token.command("list")
@common
@errors_as_messages
def list_(db: str | None, as_json: bool) -> None:
    """Every token ever created (never a secret), revoked ones too."""
    views = list_tokens(open_db(db))
    emit(
        as_json,
        [v.to_json() for v in views],
        lambda: table(
            ["token", "scopes", "workflows", "systems", "created", "revoked"],
            (
                [
                    v.name,
                    ",".join(v.scopes),
                    ",".join(v.workflows) or "any",
                    ",".join(v.systems) or "any",
                    f"{v.created_at:%Y-%m-%d %H:%M} by {v.created_by}",
                    f"{v.revoked_at:%Y-%m-%d %H:%M} by {v.revoked_by}" if v.revoked_at else "",
                ]
                for v in views
            ),
        ),
    )


@token.command("revoke")
@common
@errors_as_messages
@actor_option
@click.argument("name")
def revoke(db: str | None, as_json: bool, actor: str, name: str) -> None:
    """Revoke a token: refused from its next request on, in every worker."""
    view = revoke_token(open_db(db), name, actor=actor)
    emit(
        as_json,
        view.to_json(),
        lambda: click.echo(f"token {name} revoked by {view.revoked_by} at {view.revoked_at}"),
    )
