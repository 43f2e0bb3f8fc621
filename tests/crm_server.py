"""A stand-in CRM: a real threaded HTTP server on 127.0.0.1 serving JSON collections from memory.

Routes (the ones `adapters.http` speaks), for any collection name ``c``:

* ``GET /c?limit=N&after=K``: ``{"items": [...], "next": K or null}`` in key-text order.
* ``GET /c/K``: the record with its id field, and an ``ETag`` when ``etags``; else 404.
* ``POST /c``: create; the id comes from the body (409 if taken) or, with ``assign_ids``, is the
  next integer as text. A repeated ``Idempotency-Key`` replays the first answer.
* ``PUT /c/K`` (create or replace), ``PATCH /c/K`` (merge; null is null), ``DELETE /c/K``.

With ``etags``, ``If-Match`` and ``If-None-Match`` are honoured with 412 (unless ``if_match``
is off: ETags sent, conditions ignored); without, they are ignored. ``etags="weak"`` sends weak
ETags (``W/"v7"``) and compares If-Match strongly, as RFC 9110 says: a weak tag never matches.
``version_field`` names a field the server increments on every write, outside edits included.
Faults are injected with `fail_next` and `drop_response_next`; `edit` is an outside edit;
`after_get` runs a hook right after a GET is answered, before the client can act on it.
Every request is counted in `hits`, every applied write in `applied`. One lock guards it all.
"""

from __future__ import annotations

import itertools
import json
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

Reply = tuple[int, dict[str, str], bytes]
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class _Fault:
    method: str | None
    status: int
    retry_after: str | None
    body: str


class CrmServer:
    """JSON collections in memory behind real HTTP; start with `start()` or ``with``."""

    def __init__(
        self,
        *,
        etags: bool | Literal["weak"] = True,
        if_match: bool = True,
        version_field: str | None = None,
        assign_ids: bool = False,
        idempotency_keys: bool = True,
        id_field: str = "id",
        limit_param: str = "limit",
        after_param: str = "after",
    ):
        self.etags = etags
        self.if_match = if_match
        self.version_field = version_field
        self.assign_ids = assign_ids
        self.idempotency_keys = idempotency_keys
        self.id_field = id_field
        self.limit_param = limit_param
        self.after_param = after_param
        self.hits: list[tuple[str, str]] = []
        self.applied: list[tuple[str, str, str]] = []
        self._lock = threading.RLock()
        self._rows: dict[str, dict[str, dict[str, Any]]] = {}
        self._versions: dict[tuple[str, str], int] = {}
        self._clock = itertools.count(1)
        self._ids = itertools.count(1000)
        self._faults: list[_Fault] = []
        self._drops: list[str] = []  # a method, or "*" for any write
        self._hooks: list[tuple[str, str, Callable[[], None]]] = []
        self._replies: dict[str, Reply] = {}
        self._httpd: _Httpd | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> CrmServer:
        httpd = _Httpd(("127.0.0.1", 0), _Handler)
        httpd.crm = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None and self._thread is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = self._thread = None

    def __enter__(self) -> CrmServer:
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
        assert self._httpd is not None, "start the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- state, seen from outside HTTP ------------------------------------------------------

    def seed(self, collection: str, records: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            for key, record in records.items():
                self._store(collection, key, json.loads(json.dumps(record)))

    def record(self, collection: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._rows.get(collection, {}).get(key)
            return json.loads(json.dumps(found)) if found is not None else None

    def records(self, collection: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return json.loads(json.dumps(self._rows.get(collection, {})))

    def edit(self, collection: str, key: str, **fields: Any) -> None:
        """An outside edit: someone changes the record in the CRM's own UI (a new ETag)."""
        with self._lock:
            self._store(collection, key, {**self._rows[collection][key], **fields})

    def remove(self, collection: str, key: str) -> None:
        """An outside delete, made in the CRM's own UI."""
        with self._lock:
            self._store(collection, key, None)

    def count(self, method: str) -> int:
        with self._lock:
            return sum(1 for seen, _ in self.hits if seen == method)

    # -- faults -----------------------------------------------------------------------------

    def fail_next(
        self,
        n: int,
        status: int = 503,
        *,
        method: str | None = None,
        retry_after: str | None = None,
        body: str = "injected failure",
    ) -> None:
        """Answer the next `n` requests (of `method`, if given) with `status`, doing nothing."""
        with self._lock:
            self._faults.extend(_Fault(method, status, retry_after, body) for _ in range(n))

    def drop_response_next(self, n: int, *, method: str | None = None) -> None:
        """Apply the next `n` writes (of `method`, if given), then hang up without answering."""
        with self._lock:
            self._drops.extend([method or "*"] * n)

    def after_get(self, collection: str, key: str, hook: Callable[[], None]) -> None:
        """Run `hook` once, right after the next GET of this record is read but before it is
        sent, so whatever the hook does lands between the client's GET and its next request."""
        with self._lock:
            self._hooks.append((collection, key, hook))

    # -- HTTP -------------------------------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        method = handler.command
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        segments = [unquote(part) for part in parts.path.strip("/").split("/")]
        hook = None
        with self._lock:
            self.hits.append((method, parts.path))
            fault = _take(self._faults, lambda f: f.method in (None, method))
            if fault is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                reply: Reply = (fault.status, headers, fault.body.encode())
                drop = False
            else:
                reply = self._serve(method, segments, parts.query, handler, raw)
                taken = (
                    _take(self._drops, lambda m: m in ("*", method)) if method in WRITES else None
                )
                drop = taken is not None
            if method == "GET" and len(segments) == 2:
                found = _take(self._hooks, lambda h: (h[0], h[1]) == tuple(segments))
                hook = found[2] if found is not None else None
        if hook is not None:
            hook()
        if drop:
            handler.close_connection = True  # the write is applied; its answer is lost
            return
        status, headers, body = reply
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        if body:
            handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _serve(
        self,
        method: str,
        segments: list[str],
        query: str,
        handler: BaseHTTPRequestHandler,
        raw: bytes,
    ) -> Reply:
        if len(segments) == 1 and method == "GET":
            return self._list(segments[0], parse_qs(query))
        body: Any = None
        if method in ("POST", "PUT", "PATCH"):
            try:
                body = json.loads(raw)
            except ValueError:
                return _json(400, {"error": "the body is not JSON"})
            if not isinstance(body, dict):
                return _json(400, {"error": "the body is not a JSON object"})
        if len(segments) == 1 and method == "POST":
            return self._post(segments[0], body, handler.headers.get("Idempotency-Key"))
        if len(segments) != 2:
            return _json(404, {"error": "no such route"})
        collection, key = segments
        rows = self._rows.setdefault(collection, {})
        if not self._preconditions_hold(collection, key, handler):
            return _json(412, {"error": "precondition failed"})
        if method == "GET":
            if key not in rows:
                return _json(404, {"error": "not found"})
            return self._record_reply(200, collection, key)
        if method == "PUT":
            created = key not in rows
            self._apply(method, collection, key, _without(body, self.id_field))
            return self._record_reply(201 if created else 200, collection, key)
        if key not in rows:
            return _json(404, {"error": "not found"})
        if method == "PATCH":
            self._apply(method, collection, key, {**rows[key], **_without(body, self.id_field)})
            return self._record_reply(200, collection, key)
        if method == "DELETE":
            self._apply(method, collection, key, None)
            return 204, {}, b""
        return _json(405, {"error": f"{method} is not supported"})

    def _list(self, collection: str, params: dict[str, list[str]]) -> Reply:
        limit = int(params.get(self.limit_param, ["100"])[0])
        after = params.get(self.after_param, [None])[0]
        keys = sorted(key for key in self._rows.get(collection, {}) if after is None or key > after)
        page = keys[:limit]
        items = [{self.id_field: key, **self._rows[collection][key]} for key in page]
        cursor = page[-1] if len(keys) > limit else None
        return _json(200, {"items": items, "next": cursor})

    def _post(self, collection: str, body: dict[str, Any], token: str | None) -> Reply:
        if self.idempotency_keys and token is not None and token in self._replies:
            return self._replies[token]
        if self.assign_ids:
            key = str(next(self._ids))
        else:
            given = body.get(self.id_field)
            if type(given) not in (str, int):
                return _json(422, {"error": f"{self.id_field!r} is required"})
            key = str(given)
        if key in self._rows.setdefault(collection, {}):
            return _json(409, {"error": f"{key} already exists"})
        self._apply("POST", collection, key, _without(body, self.id_field))
        reply = self._record_reply(201, collection, key)
        reply[1]["Location"] = f"/{quote(collection, safe='')}/{quote(key, safe='')}"
        if self.idempotency_keys and token is not None:
            self._replies[token] = reply
        return reply

    def _preconditions_hold(
        self, collection: str, key: str, handler: BaseHTTPRequestHandler
    ) -> bool:
        if not self.etags or not self.if_match:
            return True
        current = self._etag(collection, key)
        if_match = handler.headers.get("If-Match")
        if if_match is not None:
            tags = [tag.strip() for tag in if_match.split(",")]
            strong = [tag for tag in tags if not tag.startswith("W/")]  # RFC 9110 13.1.1
            if current is None or ("*" not in tags and current not in strong):
                return False
        if_none_match = handler.headers.get("If-None-Match")
        if if_none_match is not None and current is not None:
            tags = [tag.strip() for tag in if_none_match.split(",")]
            if "*" in tags or current in tags:
                return False
        return True

    def _apply(self, method: str, collection: str, key: str, record: dict[str, Any] | None) -> None:
        self.applied.append((method, collection, key))
        self._store(collection, key, record)

    def _store(self, collection: str, key: str, record: dict[str, Any] | None) -> None:
        rows = self._rows.setdefault(collection, {})
        if record is None:
            rows.pop(key, None)
            self._versions.pop((collection, key), None)
        else:
            if self.version_field is not None:
                old = rows.get(key, {}).get(self.version_field, 0)
                record = {**record, self.version_field: old + 1}
            rows[key] = record
            self._versions[(collection, key)] = next(self._clock)

    def _etag(self, collection: str, key: str) -> str | None:
        version = self._versions.get((collection, key))
        if version is None:
            return None
        return f'W/"v{version}"' if self.etags == "weak" else f'"v{version}"'

    def _record_reply(self, status: int, collection: str, key: str) -> Reply:
        status, headers, body = _json(status, {self.id_field: key, **self._rows[collection][key]})
        etag = self._etag(collection, key)
        if self.etags and etag is not None:
            headers["ETag"] = etag
        return status, headers, body


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    crm: CrmServer

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the host (slow, and never needed)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    server: _Httpd

    protocol_version = "HTTP/1.1"  # keep-alive, so the client's pool is exercised
    timeout = 5  # an idle keep-alive connection frees its thread
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stalls

    def do_GET(self) -> None:
        self.server.crm.handle(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `CrmServer.hits` instead."""


def _take(queue: list[Any], matches: Callable[[Any], bool]) -> Any:
    """Remove and return the first entry of `queue` that `matches`, or None."""
    for index, entry in enumerate(queue):
        if matches(entry):
            return queue.pop(index)
    return None


def _without(body: dict[str, Any], name: str) -> dict[str, Any]:
    return {field: value for field, value in body.items() if field != name}


def _json(status: int, value: Any) -> Reply:
    return status, {}, json.dumps(value).encode()
