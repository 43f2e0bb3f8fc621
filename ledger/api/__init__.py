"""The HTTP API for no-code tools (FastAPI): `create_app` builds it, `ledger serve` runs it.

One module per concern: `app` (composition root), `auth` (bearer tokens, scopes), `errors`
(the one error mapping), `idempotency` (Idempotency-Key), `bodies` (reading and parsing
request bodies), `models` (what the OpenAPI document says), and one per route group:
`health`, `reads`, `actions`, `apply`, `reconcile`, `lanes`, `evidence` (receipts, verify,
digest, metrics; their bodies in `operations_models`); `settings` names what `ledger serve`
hands its workers.
The app is built by `ledger.api.app.create_app`: importing this package imports no FastAPI,
so the other `ledger` commands start without it.
"""
