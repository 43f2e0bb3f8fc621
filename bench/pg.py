"""A throwaway PostgreSQL server for workload 8, started as the test suite starts one
(``tests/postgres_server.py``: ``initdb`` + ``pg_ctl``, through ``runuser`` when root)."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from types import ModuleType
from typing import Any

from bench import ROOT


def _server_module() -> ModuleType:
    name = "postgres_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "postgres_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Postgres:
    """The server, the databases made on it, and copies of them (``CREATE … TEMPLATE``)."""

    def __init__(self) -> None:
        self.server: Any = _server_module().start_server()
        self._copies: list[str] = []

    @staticmethod
    def unavailable_reason(error: BaseException) -> str | None:
        module = _server_module()
        if isinstance(error, module.PostgresUnavailable):
            return str(error.reason)
        if isinstance(error, module.PostgresStartError):
            return f"could not start: {str(error).splitlines()[0]}"
        return None

    def create(self) -> str:
        return str(self.server.create_database())

    def copy(self, template_url: str) -> str:
        import psycopg
        from psycopg import sql

        template = template_url.rsplit("/", 1)[1]
        name = f"bench_copy_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.server.admin_url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        self._copies.append(name)
        return str(self.server.url_for(name))

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.server.admin_url) as connection:
            row = connection.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"

    def stop(self) -> None:
        for name in self._copies:
            self.server.drop_database(name)
        self.server.stop()
