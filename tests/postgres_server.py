"""Throwaway PostgreSQL servers for the test suite.

``start_server()`` returns a :class:`PostgresServer`:

* If ``LEDGER_TEST_POSTGRES_URL`` is set (an admin URL such as
  ``postgresql://postgres@127.0.0.1:5432/postgres``), that existing server is used and
  left running; only the databases created through this object are dropped by ``stop()``.
* Otherwise a private server is created with ``initdb`` in a temporary directory and started
  with ``pg_ctl`` on a free TCP port of 127.0.0.1 (trust auth, fsync off). ``stop()`` kills
  it and deletes the directory. Binaries come from ``LEDGER_TEST_PG_BINDIR`` if set, else
  the newest ``/usr/lib/postgresql/*/bin`` (Debian), else ``PATH``.

PostgreSQL refuses to run as root, so when running as root (as CI does) ``initdb`` and
``pg_ctl`` are run as the ``postgres`` user through ``runuser``.

``psycopg`` is imported lazily so that importing this module never fails.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from psycopg import sql as _sql

__all__ = [
    "PostgresServer",
    "PostgresStartError",
    "PostgresUnavailable",
    "find_binaries",
    "start_server",
]

ENV_URL = "LEDGER_TEST_POSTGRES_URL"
ENV_BINDIR = "LEDGER_TEST_PG_BINDIR"
DEBIAN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_USER = "postgres"
NO_BINARIES = "no PostgreSQL server binaries found (install Debian's postgresql package)"

_counter = itertools.count(1)


class PostgresUnavailable(Exception):
    """No PostgreSQL server binaries exist, so no server can be started."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PostgresStartError(RuntimeError):
    """Binaries exist (or a URL was given) but the server could not be set up or reached."""


def _version_key(bindir: Path) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin`` (``9.6`` < ``15`` < ``16``)."""
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name)) or (-1,)


def _has_tools(bindir: Path) -> bool:
    return all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl"))


def find_binaries() -> Path:
    """Return the directory holding ``initdb`` and ``pg_ctl``, or raise PostgresUnavailable."""
    override = os.environ.get(ENV_BINDIR)
    if override:
        if _has_tools(Path(override)):
            return Path(override)
        raise PostgresUnavailable(f"{ENV_BINDIR}={override} does not contain initdb and pg_ctl")
    debian = sorted(
        (p for p in Path("/").glob(DEBIAN_GLOB.lstrip("/")) if _has_tools(p)),
        key=_version_key,
        reverse=True,
    )
    if debian:
        return debian[0]
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    raise PostgresUnavailable(NO_BINARIES)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no server log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _db_name(url_or_name: str) -> str:
    """Database name from a ``postgresql://.../NAME`` URL, or the argument itself."""
    if "://" in url_or_name:
        return urlsplit(url_or_name).path.lstrip("/")
    return url_or_name


class PostgresServer:
    """A PostgreSQL server for tests: a private one (``initdb``) or an existing one (URL)."""

    def __init__(self, admin_url: str, *, owned: _OwnedCluster | None = None) -> None:
        self.admin_url = admin_url
        self._owned = owned
        self._created: set[str] = set()
        self._stopped = False

    @property
    def port(self) -> int:
        """TCP port the server listens on."""
        return urlsplit(self.admin_url).port or 5432

    def url_for(self, name: str) -> str:
        """URL of database ``name`` on this server (same user, host, port and query)."""
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path="/" + name))

    def _admin_execute(self, statement: _sql.Composed) -> None:
        import psycopg

        try:
            with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(statement)
        except psycopg.OperationalError as error:
            if self._owned is None:
                raise
            # The private server went away mid-session: say why, from its own log.
            raise PostgresStartError(
                f"the test PostgreSQL server stopped answering ({error}); "
                f"--- tail of {self._owned.log} ---\n{_tail(self._owned.log)}"
            ) from error

    def create_database(self) -> str:
        """Create a uniquely named empty database and return its URL."""
        from psycopg import sql

        name = f"ledger_test_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:8]}"
        self._admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._created.add(name)
        return self.url_for(name)

    def drop_database(self, url_or_name: str) -> None:
        """Drop a database (given by URL or name), disconnecting its clients; missing is fine."""
        from psycopg import sql

        name = _db_name(url_or_name)
        self._admin_execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        self._created.discard(name)

    def stop(self) -> None:
        """Stop a private server and delete its files; for an external one, drop our leftovers."""
        if self._stopped:
            return
        self._stopped = True
        if self._owned is not None:
            self._owned.destroy()
            return
        for name in sorted(self._created):
            with contextlib.suppress(Exception):  # best effort: the server may be gone
                self.drop_database(name)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        kind = "private" if self._owned is not None else "external"
        return f"<PostgresServer {kind} {self.admin_url}>"


class _OwnedCluster:
    """A data directory + running postmaster that we created and must clean up."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        # As root the files must belong to `postgres`, which cannot enter /root-style private
        # temp dirs, so use world-traversable /tmp in that case.
        parent = "/tmp" if self.as_root and os.path.isdir("/tmp") else None
        self.tmp = Path(tempfile.mkdtemp(prefix="changeledger-pg-", dir=parent))
        self.data = self.tmp / "data"
        self.sockdir = self.tmp / "sock"
        self.log = self.tmp / "server.log"
        self.running = False
        atexit.register(self.destroy)  # safety net if the test session dies without stop()

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        return subprocess.run(
            cmd,
            cwd=self.tmp,  # the postgres user may not be able to enter the caller's cwd
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def setup(self) -> int:
        """initdb and start the server; return its port."""
        self.sockdir.mkdir()
        if self.as_root:
            try:
                shutil.chown(self.tmp, SERVER_USER, SERVER_USER)
                shutil.chown(self.sockdir, SERVER_USER, SERVER_USER)
            except (LookupError, OSError) as exc:
                raise PostgresStartError(
                    f"running as root but cannot hand {self.tmp} to user {SERVER_USER!r}: {exc} "
                    "(Debian's postgresql package creates that user)"
                ) from exc
        result = self._run(
            "initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        if result.returncode != 0:
            raise PostgresStartError(
                f"initdb failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )
        last_error = ""
        for _attempt in range(3):  # retry only if someone grabbed the port we picked
            port = _free_port()
            options = (
                f"-p {port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
            )
            result = self._run(
                "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log),
                "-o", options,
            )  # fmt: skip
            if result.returncode == 0:
                self.running = True
                return port
            log_tail = _tail(self.log)
            last_error = (
                f"pg_ctl start failed (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n--- tail of {self.log} ---\n{log_tail}"
            )
            self._stop_server()  # in case it half-started
            if "already in use" not in log_tail:
                break
        raise PostgresStartError(last_error)

    def _stop_server(self) -> None:
        if self.data.is_dir():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", timeout=60)
        self.running = False

    def destroy(self) -> None:
        """Stop the server (immediate mode) and remove the temp dir. Idempotent."""
        atexit.unregister(self.destroy)
        try:
            self._stop_server()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _check_connection(admin_url: str, source: str) -> None:
    import psycopg

    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise PostgresStartError(f"cannot connect to {source} {admin_url}: {exc}") from exc


def start_server() -> PostgresServer:
    """Return a ready server (external via LEDGER_TEST_POSTGRES_URL, else a private one).

    Raises PostgresUnavailable when there are no server binaries, PostgresStartError when
    the server cannot be started or reached.
    """
    external = os.environ.get(ENV_URL)
    if external:
        _check_connection(external, f"{ENV_URL} =")
        return PostgresServer(external)
    cluster = _OwnedCluster(find_binaries())
    try:
        port = cluster.setup()
        server = PostgresServer(f"postgresql://postgres@127.0.0.1:{port}/postgres", owned=cluster)
        _check_connection(server.admin_url, "the freshly started server at")
    except BaseException:
        cluster.destroy()
        raise
    return server
