"""The HTTP API for no-code tools (FastAPI): `create_app` builds it, `ledger serve` runs it.

One module per concern: `app` (composition root), `auth` (bearer tokens, scopes), `errors`
(the one error mapping), `idempotency` (Idempotency-Key), `bodies` (reading and parsing
request bodies), `models` (what the OpenAPI document says), and one per route group:
`health`, `reads`, `actions`, `apply`.
"""

from ledger.api.app import create_app

__all__ = ["create_app"]
