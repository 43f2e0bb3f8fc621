"""json-server (npm, pinned in tests/node/package.json) as a real peer of the test suite.

`JsonServer` runs ``json-server`` 0.17 with node on a free loopback port, over a fresh db file
it writes from a dict. What makes it a useful stranger: numeric ids it assigns itself on POST
(or keeps a body's id), weak ETags on every answer while ``If-Match`` is ignored, plain JSON
arrays for listings (``_page``/``_limit`` pages with ``Link`` and ``X-Total-Count``, or
``_start``/``_limit`` offsets), JavaScript numbers (``90.0`` is stored as ``90``, integers beyond
2**53 rounded), and a DELETE that also removes records whose ``<parent>Id`` field pointed at the
deleted record. json-server answers a write before its db file is saved (lowdb's FileAsync
writes it atomically, but the answer does not wait): a server killed just after answering can
lose the write. `kill_once_saved` waits until the file holds it (the server "died after
committing"); `restart` serves that file again.

The binary is ``tests/node/node_modules/.bin/json-server`` (``npm ci --prefix tests/node``
installs it; `.ci/run` does). Without it, `start_json_server` skips the test, or fails it when
CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

NODE_DIR = Path(__file__).parent / "node"
BINARY = NODE_DIR / "node_modules" / "json-server" / "lib" / "cli" / "bin.js"
INSTALL = "npm ci --prefix tests/node"
STARTUP_SECONDS = 20.0


class JsonServerUnavailable(Exception):
    """node or the pinned json-server is not installed."""


class JsonServer:
    """One json-server process over its own db file in `directory`."""

    def __init__(self, directory: Path, data: dict[str, Any]):
        self.directory = directory
        self.db = directory / "db.json"
        self.db.write_text(json.dumps(data, indent=2))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> JsonServer:
        node = shutil.which("node")
        if node is None:
            raise JsonServerUnavailable("node is not on PATH")
        if not BINARY.is_file():
            raise JsonServerUnavailable(f"json-server is not installed in {NODE_DIR} ({INSTALL})")
        for _ in range(5):  # a free port can be taken between choosing and binding it
            self.port = self.port or _free_port()
            log = (self.directory / "json-server.log").open("ab")
            command = [node, str(BINARY), str(self.db), "--quiet", "--host", "127.0.0.1"]
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,  # its snapshots folder, never the repository
            )
            log.close()
            if self._wait_until_answering():
                return self
            self.port = 0
        raise RuntimeError(f"json-server did not start: {self.log()}")

    def kill(self) -> None:
        """SIGKILL: the server dies at once, mid-request or not."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def kill_once_saved(self, saved: Callable[[dict[str, Any]], bool]) -> None:
        """SIGKILL as soon as the db file satisfies `saved` (waiting on the file's state)."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while not saved(self.data()):
            if time.monotonic() > deadline:
                raise AssertionError(f"json-server never saved the write: {self.data()}")
            time.sleep(0.005)
        self.kill()

    def restart(self) -> None:
        """Start again on the same port over the same db file (what was committed survives)."""
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None

    def data(self) -> dict[str, Any]:
        """The db file as json-server last saved it (it replaces the file atomically)."""
        return dict(json.loads(self.db.read_text()))

    def records(self, collection: str) -> dict[str, dict[str, Any]]:
        """A collection as saved, keyed by id text, each record without its id."""
        return {
            str(row["id"]): {k: v for k, v in row.items() if k != "id"}
            for row in self.data()[collection]
        }

    def log(self) -> str:
        path = self.directory / "json-server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def _wait_until_answering(self) -> bool:
        deadline = time.monotonic() + STARTUP_SECONDS
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # exited: most likely the port was taken
            try:
                if httpx.get(f"{self.url}/db", timeout=1.0).status_code == 200:
                    return True
            except httpx.TransportError:
                time.sleep(0.02)  # polling for the process to be ready, not timing a race
        self.kill()
        return False


def start_json_server(directory: Path, data: dict[str, Any]) -> JsonServer:
    """A started json-server, or the test skipped (failed when CI=true) without one."""
    unavailable = None
    try:
        return JsonServer(directory, data).start()
    except JsonServerUnavailable as missing:
        unavailable = str(missing)
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"json-server is required when CI=true: {unavailable}", pytrace=False)
    pytest.skip(f"json-server unavailable: {unavailable}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
