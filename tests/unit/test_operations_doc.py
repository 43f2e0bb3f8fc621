"""docs/operations.md's signature check is code a receiver copies: it must verify what the
webhook notifier signs, and refuse anything else."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.notify import Notice, signature

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def documented_verify() -> Any:
    text = DOC.read_text()
    (code,) = re.findall(r"<!-- verify-signature.*?-->\n```python\n(.*?)```", text, re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    return namespace["verify"]


def test_the_documented_check_verifies_what_the_webhook_signs() -> None:
    verify = documented_verify()
    notice = Notice("n1", "lane.paused", 7, datetime(2026, 11, 28, tzinfo=UTC), ("w",), "paused")
    body = notice.body()
    header = signature(b"secret", body)
    assert verify(b"secret", body, header)
    assert not verify(b"other secret", body, header)
    assert not verify(b"secret", body.replace(b"paused", b"active"), header)
