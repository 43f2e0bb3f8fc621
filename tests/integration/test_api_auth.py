"""Every route but health needs a live token (401), and a token acts only within its scopes,
workflows and systems (403). The routes are enumerated from the app, not from a list kept by
hand, so a new route is covered the day it is added."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import iter_route_contexts

OPEN = {("GET", "/v1/health")}
# The scope each route needs; the test below fails when a route is missing here.
SCOPES = {
    ("GET", "/v1/records/{system}/{collection}/{key:path}/history"): "read",
    ("GET", "/v1/records/{system}/{collection}/{key:path}"): "read",
    ("GET", "/v1/collections/{system}/{collection}"): "read",
    ("GET", "/v1/diff"): "read",
    ("GET", "/v1/batches"): "read",
    ("GET", "/v1/checkpoints"): "read",
    ("GET", "/v1/openapi.json"): None,  # any live token
    ("POST", "/v1/actions"): "record",
    ("POST", "/v1/apply"): "apply",
    ("POST", "/v1/rollbacks"): "rollback",
    ("GET", "/v1/rollbacks"): "read",
    ("GET", "/v1/rollbacks/{plan}"): "read",
    ("GET", "/v1/rollbacks/{plan}/compensations"): "read",
    ("GET", "/v1/rollbacks/{plan}/runbook"): "read",
    ("POST", "/v1/rollbacks/{plan}/approvals"): "approve",
    ("POST", "/v1/rollbacks/{plan}/apply"): "rollback",
    ("POST", "/v1/replays"): "rollback",
    ("POST", "/v1/reconcile/check"): "read",
    ("POST", "/v1/reconcile/plan"): "read",
    ("POST", "/v1/reconcile/apply"): "admin",
    ("GET", "/v1/lanes"): "read",
    ("GET", "/v1/lanes/{workflow}"): "read",
    ("POST", "/v1/lanes/{workflow}/pause"): "apply",
    ("POST", "/v1/lanes/{workflow}/enable"): "admin",
    ("POST", "/v1/lanes/{workflow}/canary"): "admin",
    ("GET", "/v1/receipts/{action:path}"): "read",
    ("GET", "/v1/receipts/{action:path}/proof"): "read",
    ("POST", "/v1/verify"): "read",
    ("GET", "/v1/digest"): "read",
    ("GET", "/v1/metrics"): "read",
}
SINGLE_SCOPE_TOKENS = {
    "reader": "read",
    "recorder": "record",
    "applier": "apply",
    "roller": "rollback",
    "approver": "approve",
}
SAMPLE = {
    "system": "crm",
    "collection": "contacts",
    "key:path": "1",
    "plan": "0123456789ab",
    "workflow": "lead-sync",
    "action:path": "crm/contacts/1@1",
}
# The body of each POST route (the rest record or apply one change).
BODIES = {
    "/v1/reconcile/check": {"system": "crm", "collection": "contacts"},
    "/v1/reconcile/plan": {"system": "crm", "collection": "contacts", "policy": "ledger"},
    "/v1/reconcile/apply": {"system": "crm", "collection": "contacts", "policy": "ledger"},
    "/v1/lanes/{workflow}/pause": {"reason": "auth check"},
    "/v1/lanes/{workflow}/enable": {"reason": "auth check"},
    "/v1/lanes/{workflow}/canary": {"batch": "auth-check", "limit": 1},
    "/v1/verify": {},
}


def routes(app):
    """Every (method, path) the app's router serves (FastAPI resolves included routers
    lazily: `iter_route_contexts` walks them as the router itself does)."""
    for route in iter_route_contexts(app.routes):
        for method in sorted((route.methods or set()) - {"HEAD"}):
            yield method, route.path


def url(path):
    return re.sub(r"\{([^}]+)\}", lambda m: SAMPLE[m.group(1)], path)


def request(client, method, path):
    if method == "GET":
        query = {"target": "crm/contacts", "from": "position:1"} if path == "/v1/diff" else {}
        return client.get(url(path), params=query)
    body = {"entity": "crm/contacts/1", "op": "update", "set": {"stage": "mql"}}
    if path in BODIES:
        body = BODIES[path]
    elif path == "/v1/apply":
        body = {"system": "crm", "batch": "auth-check", "changes": [body]}
    return client.request(method, url(path), json=body)


def test_the_scope_table_names_every_route_of_the_app(api):
    assert set(routes(api.app)) == set(SCOPES) | OPEN


@pytest.mark.parametrize(
    "credentials",
    [None, "Bearer nonsense", "Bearer lt_admin.wrong", "Basic YWRtaW46YWRtaW4=", "revoked"],
)
def test_every_route_but_health_answers_401_without_a_live_token(api, credentials):
    if credentials == "revoked":
        credentials = f"Bearer {api.secrets['gone']}"
    headers = {} if credentials is None else {"Authorization": credentials}
    with api.client(**headers) as client:
        for method, path in routes(api.app):
            response = request(client, method, path)
            if (method, path) in OPEN:
                assert response.status_code == 200
                continue
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert response.json()["error"] == "unauthorized"
    assert [b.name for b in api.ledger.batches()] == ["baseline"]  # nothing recorded


@pytest.mark.parametrize("token", [*sorted(SINGLE_SCOPE_TOKENS), "admin"])
def test_each_scope_is_allowed_where_it_should_be_and_refused_elsewhere(api, token):
    with api.client(token) as client:
        for (method, path), scope in SCOPES.items():
            response = request(client, method, path)
            allowed = scope is None or token == "admin" or SINGLE_SCOPE_TOKENS[token] == scope
            if allowed:
                assert response.status_code not in (401, 403), (token, path, response.text)
            else:
                assert response.status_code == 403, (token, path, response.text)
                assert f"this needs {scope!r}" in response.json()["message"]


def test_a_token_for_one_workflow_cannot_record_or_apply_for_another(api):
    change = {"entity": "crm/contacts/1", "op": "update", "set": {"stage": "mql"}}
    with api.client("sync-bot") as client:
        other = client.post("/v1/actions", json={**change, "workflow": "cleanup"})
        unnamed = client.post("/v1/actions", json=change)
        applied = client.post(
            "/v1/apply",
            json={"system": "crm", "batch": "b1", "workflow": "cleanup", "changes": [change]},
        )
        own = client.post("/v1/actions", json={**change, "workflow": "lead-sync"})
    assert (other.status_code, unnamed.status_code, applied.status_code) == (403, 403, 403)
    assert "acts only for workflows lead-sync, not 'cleanup'" in other.json()["message"]
    assert api.stage("1") == "lead"
    assert own.status_code == 201
    actions = [a for a in api.ledger.history(_address("crm/contacts/1")) if a.batch != "baseline"]
    assert [(a.workflow, a.actor) for a in actions] == [("lead-sync", "sync-bot")]


def test_a_token_limited_to_workflows_lists_only_their_batches(api):
    change = {"entity": "crm/contacts/2", "op": "update", "set": {"stage": "mql"}}
    with api.client("admin") as admin:
        assert admin.post("/v1/actions", json={**change, "batch": "other"}).status_code == 201
    with api.client("sync-bot") as client:
        assert client.get("/v1/batches").json() == []


def test_a_token_limited_to_systems_reads_no_other(api):
    with api.client("crm-reader") as client:
        assert client.get("/v1/records/crm/contacts/1").status_code == 200
        refused = client.get("/v1/records/erp/orders/1")
        diff = client.get("/v1/diff", params={"target": "erp/orders", "from": "position:1"})
    assert refused.status_code == 403 and diff.status_code == 403
    assert "limited to systems crm, not 'erp'" in refused.json()["message"]


def test_the_tokens_name_is_the_actor_and_a_change_may_not_name_another(api):
    change = {"entity": "crm/contacts/3", "op": "update", "set": {"stage": "mql"}}
    with api.client("recorder") as client:
        refused = client.post("/v1/actions", json={**change, "actor": "someone-else"})
        receipt = client.post("/v1/actions", json=change).json()
    assert refused.status_code == 422
    assert refused.json()["field"] == "actor"
    assert receipt["actor"] == "recorder"


def _address(text):
    from ledger import Address

    return Address.parse(text)
