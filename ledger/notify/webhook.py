"""The webhook notifier: each notice POSTed as JSON, signed with an HMAC, retried with backoff.

The body is the notice's exact bytes; ``X-Ledger-Signature: sha256=<hex>`` is the HMAC-SHA256 of
those bytes under the secret (read from the environment variable the configuration names, never
from the file), so a receiver holding the secret knows the ledger sent it (docs/operations.md
shows the check). Connection failures, timeouts, 408, 429 and 5xx answers are retried
(`tenacity`, exponential backoff, ``retries`` more tries); any other answer outside 2xx is a
refusal that retrying would not change.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import timedelta

import httpx
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity import wait_exponential as exponential

from ledger.notify.notices import Notice
from ledger.notify.notifier import NotifierFailed

SIGNATURE_HEADER = "X-Ledger-Signature"
TIMESTAMP_HEADER = "X-Ledger-Timestamp"
_RETRIED_STATUS = {408, 429}
_LEASE_MARGIN = timedelta(seconds=30)


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Ledger-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class _Retryable(Exception):
    """A failure worth another try (the server may answer next time)."""


@dataclass(frozen=True)
class Webhook:
    """POST each notice to ``url``, signed with ``secret``."""

    name: str
    url: str
    secret: bytes
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 0.5

    @property
    def lease(self) -> timedelta:
        waits = sum(min(self.backoff * 2**n, 30.0) for n in range(self.retries))
        return timedelta(seconds=self.timeout * (self.retries + 1) + waits) + _LEASE_MARGIN

    def send(self, notice: Notice) -> int:
        body = notice.body()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self.secret, body),
            "X-Ledger-Notice": notice.id,
            "X-Ledger-Kind": notice.kind,
        }
        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=exponential(multiplier=self.backoff, max=30),
            retry=retry_if_exception_type(_Retryable),
        )
        with httpx.Client(timeout=self.timeout) as client:
            try:
                for attempt in retrying:
                    with attempt:
                        self._post(client, body, headers)
            except RetryError as error:
                tries = error.last_attempt.attempt_number
                raise NotifierFailed(f"{error.last_attempt.exception()}", tries) from None
            except NotifierFailed as error:
                error.attempts = retrying.statistics.get("attempt_number", 1)
                raise
        return int(retrying.statistics.get("attempt_number", 1))

    def _post(self, client: httpx.Client, body: bytes, headers: dict[str, str]) -> None:
        try:
            response = client.post(
                self.url, content=body, headers={**headers, TIMESTAMP_HEADER: str(int(time.time()))}
            )
        except httpx.TransportError as error:
            raise _Retryable(f"POST {self.url} failed: {error or type(error).__name__}") from None
        if response.is_success:
            return
        answer = f"POST {self.url} answered {response.status_code} {response.reason_phrase}"
        if response.status_code >= 500 or response.status_code in _RETRIED_STATUS:
            raise _Retryable(answer)
        raise NotifierFailed(answer + " (not retried: the request itself was refused)")
