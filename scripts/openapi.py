"""Write the HTTP API's OpenAPI document to docs/openapi.json, as `ledger serve` serves it at
/v1/openapi.json (tests/integration/test_api_docs.py fails while the two differ).

    .venv/bin/python scripts/openapi.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson

from ledger import open_ledger
from ledger.api.app import create_app, openapi_document

DOCS = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        ledger = open_ledger(str(Path(folder) / "ledger.db"), create=True)
        try:
            document = openapi_document(create_app(None, ledger=ledger))
        finally:
            ledger.close()
    DOCS.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"wrote {DOCS}")


if __name__ == "__main__":
    main()
