"""JSON requests to one REST system, with the HTTP adapter's retry policy and a count of what
they cost (`Activity`), so a run's summary can say how many retries and how long it waited.

What is retried: connection failures, timeouts, 408, 429 and 5xx, with exponential backoff and
full jitter (``retry_wait_initial`` doubling, capped at ``retry_wait_max``), for up to
``retry_attempts`` attempts. A ``Retry-After`` no longer than ``retry_wait_max`` is waited as
asked; a longer one ends the retries at once. A `Retryable` failure says whether its request may
have reached the server (``sent``), so a write whose answer was lost is read back before it is
sent again (see `adapters.http`). Then `TransientError` names the system, method, URL and last
status, and whether that request could have changed anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from ledger.errors import AdapterError, ConfigurationError, TransientError

T = TypeVar("T")
_BODY_SHOWN = 2000  # characters of a refusal's response body kept in the error


@dataclass
class Activity:
    """What the adapter's requests cost and what it noticed, for a run's summary."""

    requests: int = 0
    retries: int = 0
    waited: float = 0.0
    warnings: list[str] = field(default_factory=list)


class Retryable(Exception):
    """A failure worth another attempt; ``sent`` when the request may have reached the server."""

    def __init__(
        self, method: str, url: str, reason: str, *, sent: bool, retry_after: float | None = None
    ):
        super().__init__(f"{method} {url}: {reason}")
        self.method = method
        self.url = url
        self.reason = reason
        self.sent = sent
        self.retry_after = retry_after


class Moved(Retryable):
    """412: the record changed between our GET and our write; re-read at once, no backoff."""


class RetryingClient:
    """An `httpx.Client` speaking JSON to one system, retried by one policy."""

    def __init__(
        self,
        system: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        retry_attempts: int = 5,
        retry_wait_initial: float = 0.05,
        retry_wait_max: float = 2.0,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if retry_attempts < 1:
            raise ConfigurationError(f"{system}: retry_attempts must be at least 1")
        self.system = system
        self.activity = Activity()
        self._headers = {"Accept": "application/json", **(headers or {})}
        self._attempts = retry_attempts
        self._backoff = wait_random_exponential(multiplier=retry_wait_initial, max=retry_wait_max)
        self._wait_max = retry_wait_max
        self._sleep = sleep
        # An injected client is its owner's to configure (timeout included) and to close.
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout)

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request; raises `Retryable` for what is worth another attempt."""
        sending = {**self._headers, **(headers or {})}
        content = None
        if body is not None:
            try:
                content = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
            except (TypeError, ValueError) as error:  # e.g. a Decimal read back for a PUT
                raise AdapterError(f"{self.system}: {method} {url}: {error}") from None
            sending["Content-Type"] = "application/json"
        self.activity.requests += 1
        try:
            response = self._client.request(
                method, url, content=content, headers=sending, params=params
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise Retryable(method, url, f"could not connect ({error})", sent=False) from error
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as error:
            reason = f"{type(error).__name__}: {error}"
            raise Retryable(method, url, reason, sent=method != "GET") from error
        status = response.status_code
        if status in (408, 429) or status >= 500:
            raise Retryable(
                method,
                url,
                describe(response),
                sent=status >= 500 and method != "GET",
                retry_after=_retry_after(response),
            )
        return response

    def retrying(self) -> Retrying:
        """A fresh retry loop (its statistics say how many attempts it made)."""
        return Retrying(
            stop=stop_after_attempt(self._attempts) | _StopOnLongRetryAfter(self._wait_max),
            wait=self._wait,
            retry=retry_if_exception_type(Retryable),
            sleep=self._pause,
            reraise=True,
        )

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """An idempotent request function, retried; `TransientError` once attempts run out."""
        retrying = self.retrying()
        try:
            return retrying(function, *args)
        except Retryable as failure:
            raise self.transient(failure, retrying) from failure

    def transient(self, failure: Retryable, retrying: Retrying) -> TransientError:
        attempts = retrying.statistics.get("attempt_number", 1)
        waited = ""
        if failure.retry_after is not None and failure.retry_after > self._wait_max:
            waited = f" (the server asked to wait {failure.retry_after:g}s)"
        done = "this read changed nothing" if failure.method == "GET" else "this write did not land"
        return TransientError(
            f"{self.system}: {failure.method} {failure.url} failed after {attempts} "
            f"attempt(s), last: {failure.reason}{waited}; {done}; retry later"
        )

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def _pause(self, seconds: float) -> None:
        self.activity.retries += 1
        self.activity.waited += seconds
        self._sleep(seconds)

    def _wait(self, retry_state: RetryCallState) -> float:
        failure = _failure(retry_state)
        if isinstance(failure, Moved):
            return 0.0
        if failure is not None and failure.retry_after is not None:
            return failure.retry_after
        return float(self._backoff(retry_state))


def describe(response: httpx.Response) -> str:
    """A response's status and (the start of) its body, for an error message."""
    text = response.text
    if len(text) > _BODY_SHOWN:
        text = text[:_BODY_SHOWN] + "…"
    return f"{response.status_code} {response.reason_phrase}: {text}"


class _StopOnLongRetryAfter(stop_base):
    """Stop when the server asks for a longer wait than we are willing to spend."""

    def __init__(self, limit: float):
        self.limit = limit

    def __call__(self, retry_state: RetryCallState) -> bool:
        failure = _failure(retry_state)
        return failure is not None and (failure.retry_after or 0.0) > self.limit


def _failure(retry_state: RetryCallState) -> Retryable | None:
    outcome = retry_state.outcome
    failure = outcome.exception() if outcome is not None else None
    return failure if isinstance(failure, Retryable) else None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
