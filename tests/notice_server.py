"""A webhook receiver: a real threaded HTTP server on 127.0.0.1 that keeps every POST.

`fail_next(n, status)` answers the next n requests with ``status``; `hold()` keeps each request
waiting until `release()` (so a test can act while a delivery is mid-request, without sleeping);
`received` is set on every request kept. Each request is kept with its body and headers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


class NoticeServer:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.answered: list[int] = []
        self.received = threading.Event()
        self.entered = threading.Event()
        self._failures: list[int] = []
        self._gate = threading.Event()
        self._gate.set()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.entered.set()
                server._gate.wait(timeout=60)
                with server._lock:
                    status = server._failures.pop(0) if server._failures else 200
                    server.answered.append(status)
                    if status == 200:
                        server.requests.append(Request(self.path, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if status == 200:
                    server.received.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def fail_next(self, count: int, status: int = 500) -> None:
        with self._lock:
            self._failures += [status] * count

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def __enter__(self) -> NoticeServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()
