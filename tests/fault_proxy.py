"""A loopback HTTP proxy in front of a real server (json-server), injecting the faults networks
and servers produce, at exact requests rather than at wall-clock moments.

* `fail_next`: answer the next requests with 503 (or any status) without forwarding them;
* `drop_response_next`: forward a write (the server commits it), then hang up unanswered;
* `hold_response_next`: forward a write, then hold its answer until released (a client with a
  short timeout gives up first: a write that landed while its client timed out);
* `after_forward`: forward a request, then run a hook before answering (kill the server after it
  committed a write; make an outside edit right after the client's GET was answered), and
  optionally hang up instead of answering.

An upstream that cannot be reached is answered 502, as a gateway does. Every request is counted
in `hits` (with its ``If-Match`` header, if any); every forwarded one in `forwarded` with the
server's status.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-encoding",
    "content-length",
    "host",
    "accept-encoding",
    "date",
    "server",
}


@dataclass
class _Rule:
    method: str | None
    path: str | None
    status: int | None = None  # answer this instead of forwarding
    retry_after: str | None = None
    drop: bool = False  # forward, then hang up
    hook: Callable[[], None] | None = None  # forward, then run this before answering
    hold: threading.Event | None = None  # forward, then wait for this before answering
    skip: int = 0  # matching requests to let through untouched first
    body: str = "injected failure"

    def matches(self, method: str, path: str) -> bool:
        return self.method in (None, method) and self.path in (None, path)


@dataclass
class FaultProxy:
    """Forwards to `upstream` (a base URL); start with ``with`` or `start`."""

    upstream: str
    hits: list[tuple[str, str]] = field(default_factory=list)
    if_match: list[str] = field(default_factory=list)
    forwarded: list[tuple[str, str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._httpd: _Httpd | None = None
        self._thread: threading.Thread | None = None
        # No keep-alive upstream: a restarted server never meets a stale pooled connection.
        self._client = httpx.Client(timeout=30.0, limits=httpx.Limits(max_keepalive_connections=0))

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        httpd = _Httpd(("127.0.0.1", 0), _Handler)
        httpd.proxy = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            for rule in self._rules:
                if rule.hold is not None:
                    rule.hold.set()
        if self._httpd is not None and self._thread is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = self._thread = None
        self._client.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start the proxy first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- faults -----------------------------------------------------------------------------

    def fail_next(
        self,
        n: int,
        status: int = 503,
        *,
        method: str | None = None,
        path: str | None = None,
        retry_after: str | None = None,
        skip: int = 0,
    ) -> None:
        """Answer the next `n` matching requests (after `skip` of them) with `status`,
        forwarding nothing."""
        self._add(1, method, path, status=status, retry_after=retry_after, skip=skip)
        self._add(n - 1, method, path, status=status, retry_after=retry_after)

    def drop_response_next(self, n: int = 1, *, method: str, path: str | None = None) -> None:
        """Forward the next `n` matching requests (writes land), then hang up unanswered."""
        self._add(n, method, path, drop=True)

    def hold_response_next(self, *, method: str, path: str | None = None) -> threading.Event:
        """Forward the next matching request, then hold its answer until the event is set."""
        release = threading.Event()
        self._add(1, method, path, hold=release)
        return release

    def after_forward(
        self,
        hook: Callable[[], None],
        *,
        method: str,
        path: str | None = None,
        drop: bool = False,
        skip: int = 0,
    ) -> None:
        """Forward the next matching request (after `skip` of them), run `hook`, then answer
        (or hang up if `drop`)."""
        self._add(1, method, path, hook=hook, drop=drop, skip=skip)

    def count(self, method: str) -> int:
        with self._lock:
            return sum(1 for seen, _ in self.hits if seen == method)

    def _add(self, n: int, method: str | None, path: str | None, **kind: Any) -> None:
        with self._lock:
            self._rules.extend(_Rule(method, path, **kind) for _ in range(n))

    # -- HTTP -------------------------------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        method = handler.command
        path = handler.path.split("?", 1)[0]
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            self.hits.append((method, path))
            if "If-Match" in handler.headers:
                self.if_match.append(handler.headers["If-Match"])
            rule = next((r for r in self._rules if r.matches(method, path)), None)
            if rule is not None and rule.skip:
                rule.skip -= 1
                rule = None
            elif rule is not None:
                self._rules.remove(rule)
        if rule is not None and rule.status is not None:
            headers = {"Retry-After": rule.retry_after} if rule.retry_after else {}
            self._answer(handler, rule.status, headers, rule.body.encode())
            return
        status, headers, content = self._forward(method, handler, body)
        if rule is not None:
            if rule.hook is not None:
                rule.hook()
            if rule.hold is not None:
                rule.hold.wait(timeout=60)
            if rule.drop:
                handler.close_connection = True  # the write landed; its answer is lost
                return
        self._answer(handler, status, headers, content)

    def _forward(
        self, method: str, handler: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            response = self._client.request(
                method, self.upstream + handler.path, content=body or None, headers=headers
            )
        except httpx.TransportError as error:
            return 502, {}, f"upstream unreachable: {error}".encode()
        with self._lock:
            self.forwarded.append((method, handler.path.split("?", 1)[0], response.status_code))
        passed = {  # links and locations point back through the proxy
            k: v.replace(self.upstream, self.url)
            for k, v in response.headers.items()
            if k.lower() not in HOP_BY_HOP
        }
        return response.status_code, passed, response.content

    def _answer(
        self, handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the host."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    server: _Httpd

    protocol_version = "HTTP/1.1"
    timeout = 5
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.server.proxy.handle(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `FaultProxy.hits`."""
