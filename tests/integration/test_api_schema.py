"""The served OpenAPI document holds: it is the one kept in docs/openapi.json, and
schemathesis, generating requests from it (valid and invalid), finds against a live server
no 5xx and no answer outside the document (status, content type, body schema). Bounded: a
few dozen examples per operation, derandomized."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import schemathesis
from fixtures.api import served_api
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
EXAMPLES = 40  # per operation: 8 operations, a few hundred requests in all
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
schema = schemathesis.openapi.from_path(DOCUMENT)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    yield from served_api(tmp_path_factory.mktemp("schema"))


def test_the_served_document_is_the_one_in_docs(live):
    """Run `.venv/bin/python scripts/openapi.py` after changing a route or a model."""
    with live.client("admin") as client:
        served = client.get("/v1/openapi.json").json()
    assert served == orjson.loads(DOCUMENT.read_bytes()), "docs/openapi.json is stale"


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_to_its_openapi_document(case, live):
    case.call_and_validate(
        base_url=live.url,
        headers={"Authorization": f"Bearer {live.secrets['admin']}"},
        checks=CHECKS,
    )
