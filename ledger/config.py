"""Systems and their adapters, configured in one TOML file (``ledger.toml``), read once.

```toml
[systems.crm]                       # a SQL database (any SQLAlchemy URL)
type = "sql"
url = "sqlite:///crm.db"            # relative paths are relative to this file's folder
collections.contacts = { table = "contacts", key = ["id"] }
```

The file is ``--config``, else ``$LEDGER_CONFIG``, else ``./ledger.toml``. The whole file is
checked when it is read: an unknown or mistyped setting anywhere is refused naming its key
(``systems.crm.collections.orders.keys is not a setting``) and what was expected, so a typo
never falls back to a default silently.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from ledger.errors import ConfigurationError
from ledger.ports import Adapter
from ledger.rollback import REPAIRS, Contract
from ledger.settings import check_settings, config_path, duration, read_config

TARGET_CONNECT_TIMEOUT = "10"  # seconds; a PostgreSQL target that does not answer fails fast
CONTRACT_SETTINGS = ("protected", "window", "repair", "owner")


def load_systems(path: str | None = None) -> dict[str, dict[str, Any]]:
    """The ``[systems]`` table of the configuration file, every setting in it checked."""
    location = config_path(path)
    data = read_config(location)
    systems = data.get("systems")
    if not isinstance(systems, dict) or not systems:
        raise ConfigurationError(f"{location}: no [systems.NAME] table")
    for name, settings in systems.items():
        if not isinstance(settings, dict) or "type" not in settings:
            raise ConfigurationError(f"{location}: systems.{name}.type is missing")
        kind = KINDS.get(settings["type"])
        if kind is None:
            raise ConfigurationError(
                f"{location}: systems.{name}.type {settings['type']!r} is not one of "
                f"{', '.join(sorted(KINDS))}"
            )
        check_settings(f"systems.{name}", settings, {"type": str, **kind.settings})
        missing = [key for key in kind.required if key not in settings]
        if missing:
            raise ConfigurationError(f"systems.{name}.{missing[0]} is missing")
        kind.routes(name, settings)
        for collection, route in settings.get("collections", {}).items():
            if "rollback" in route:
                _contract(f"systems.{name}.collections.{collection}.rollback", route["rollback"])
    return systems


def open_adapter(name: str, path: str | None = None) -> Adapter:
    """The adapter for one configured system."""
    systems = load_systems(path)
    if name not in systems:
        raise ConfigurationError(
            f"no system {name!r} in {config_path(path)}; configured: {', '.join(sorted(systems))}"
        )
    settings = systems[name]
    kind = KINDS[settings["type"]]
    return kind.build(
        name, settings, kind.routes(name, settings), config_path(path).absolute().parent
    )


def open_adapters(path: str | None = None) -> dict[str, Adapter]:
    return {name: open_adapter(name, path) for name in load_systems(path)}


@contextmanager
def configured_systems(path: str | None = None) -> Iterator[dict[str, Adapter]]:
    """Every configured system's adapter, closed when the block ends, whatever it raised."""
    adapters = open_adapters(path)
    try:
        yield adapters
    finally:
        for adapter in adapters.values():
            adapter.close()


def configured_contracts(path: str | None = None) -> dict[tuple[str, str], Contract]:
    """The rollback contracts, or none when no configuration file declares systems."""
    location = config_path(path)
    if not location.is_file() or not read_config(location).get("systems"):
        return {}
    return load_contracts(path)


def load_contracts(path: str | None = None) -> dict[tuple[str, str], Contract]:
    """The rollback contracts declared per collection (``collections.NAME.rollback``)."""
    return {
        (system, name): _contract(
            f"systems.{system}.collections.{name}.rollback", route["rollback"]
        )
        for system, settings in load_systems(path).items()
        for name, route in settings.get("collections", {}).items()
        if "rollback" in route
    }


def _route(where: str, route_class: type, route: dict[str, Any]) -> Any:
    """A collection's table built as `route_class(**route)`, checked against its fields."""
    hints = typing.get_type_hints(route_class)
    check_settings(
        where,
        route,
        {f.name: hints[f.name] for f in dataclasses.fields(route_class)},
    )
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in route.items()}
    try:
        return route_class(**given)
    except ConfigurationError as error:
        raise ConfigurationError(f"{where}.{error}") from None


def _collections(system: str, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each collection's adapter settings (its ``rollback`` contract is read separately)."""
    collections = settings["collections"]
    for name, route in collections.items():
        if not isinstance(route, dict):
            raise ConfigurationError(f"systems.{system}.collections.{name} must be a table")
    return {
        name: {key: value for key, value in route.items() if key != "rollback"}
        for name, route in collections.items()
    }


def _contract(where: str, declared: Any) -> Contract:
    if not isinstance(declared, dict):
        raise ConfigurationError(f"{where} must be a table of {', '.join(CONTRACT_SETTINGS)}")
    check_settings(
        where,
        declared,
        {"protected": tuple[str, ...], "window": str, "repair": str, "owner": str},
    )
    repair = declared.get("repair")
    if repair is not None and repair not in REPAIRS:
        raise ConfigurationError(f"{where}.repair {repair!r} is not one of {', '.join(REPAIRS)}")
    return Contract(
        protected=tuple(declared.get("protected", ())),
        window=duration(declared["window"], f"{where}.window") if "window" in declared else None,
        repair=repair,
        owner=declared.get("owner"),
    )


# The adapters -------------------------------------------------------------------------------


def _sql_routes(system: str, settings: dict[str, Any]) -> dict[str, Any]:
    from adapters.sql import SqlCollection

    routes = {}
    for name, route in _collections(system, settings).items():
        route = {"table": name, **route}
        if isinstance(route.get("key"), str):
            route["key"] = [route["key"]]
        routes[name] = _route(f"systems.{system}.collections.{name}", SqlCollection, route)
    return routes


def _sql(system: str, settings: dict[str, Any], routes: dict[str, Any], base: Path) -> Adapter:
    import sqlalchemy as sa

    from adapters.sql import SqlAdapter

    where = f"systems.{system}.url"
    try:
        url = sa.engine.make_url(settings["url"])
    except sa.exc.ArgumentError:
        raise ConfigurationError(f"{where} is not a database URL (see docs/adapters.md)") from None
    url = _sqlite_file(url, base, where) if url.get_backend_name() == "sqlite" else url
    if url.drivername in ("postgresql", "postgres"):
        # SQLAlchemy's default PostgreSQL driver is psycopg2; the ledger installs psycopg 3.
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        url = url.update_query_dict({"connect_timeout": TARGET_CONNECT_TIMEOUT})
    try:
        return SqlAdapter(system, url.render_as_string(hide_password=False), routes)
    except (ImportError, sa.exc.ArgumentError) as error:
        raise ConfigurationError(
            f"{where}: {error}; for PostgreSQL use postgresql:// or postgresql+psycopg:// "
            "(the psycopg 3 driver installed with the ledger)"
        ) from None


def _sqlite_file(url: Any, base: Path, where: str) -> Any:
    """A SQLite target is a file that exists, found from the configuration file's folder."""
    database = url.database
    if not database or database == ":memory:" or url.query.get("uri") in ("true", "1"):
        return url
    path = base / database
    if not path.is_file():
        raise ConfigurationError(
            f"{where}: no SQLite database at {path}; a target must exist (the ledger does not "
            "create one), and a relative path is relative to the configuration file's folder"
        )
    return url.set(database=str(path))


def _http_routes(system: str, settings: dict[str, Any]) -> dict[str, Any]:
    from adapters.http import CollectionRoute

    return {
        name: _route(f"systems.{system}.collections.{name}", CollectionRoute, route)
        for name, route in _collections(system, settings).items()
    }


_HTTP_OPTIONS: dict[str, Any] = {  # HttpAdapter keywords settable per system, with their types
    "timeout": float,
    "retry_attempts": int,
    "retry_wait_initial": float,
    "retry_wait_max": float,
    "page_size": int,
    "require_conditional": bool,
    "conditional_writes": Literal["probe", "honoured", "ignored"],
    "number_model": Literal["json", "javascript"],
}


def _http(system: str, settings: dict[str, Any], routes: dict[str, Any], base: Path) -> Adapter:
    from adapters.http import HttpAdapter

    return HttpAdapter(
        system,
        settings["base_url"],
        routes,
        headers={
            name: os.path.expandvars(value) for name, value in settings.get("headers", {}).items()
        },
        **{key: settings[key] for key in _HTTP_OPTIONS if key in settings},
    )


def _files_routes(system: str, settings: dict[str, Any]) -> dict[str, Any]:
    from adapters.files import CsvCollection, JsonLinesCollection

    formats = {"csv": CsvCollection, "jsonl": JsonLinesCollection}
    routes = {}
    for name, route in _collections(system, settings).items():
        where = f"systems.{system}.collections.{name}"
        route = dict(route)
        kind = route.pop("format", "csv")
        if kind not in formats:
            raise ConfigurationError(f"{where}.format must be csv or jsonl, not {kind!r}")
        routes[name] = _route(where, formats[kind], route)
    return routes


def _files(system: str, settings: dict[str, Any], routes: dict[str, Any], base: Path) -> Adapter:
    from adapters.files import FileAdapter

    return FileAdapter(system, base / settings["directory"], routes)


@dataclasses.dataclass(frozen=True)
class _Kind:
    """One ``type`` of system: its settings with their types, its collections, its adapter."""

    settings: dict[str, Any]
    required: tuple[str, ...]
    routes: Callable[[str, dict[str, Any]], dict[str, Any]]
    build: Callable[[str, dict[str, Any], dict[str, Any], Path], Adapter]


KINDS: dict[str, _Kind] = {
    "sql": _Kind({"url": str, "collections": dict}, ("url", "collections"), _sql_routes, _sql),
    "http": _Kind(
        {"base_url": str, "headers": dict[str, str], "collections": dict, **_HTTP_OPTIONS},
        ("base_url", "collections"),
        _http_routes,
        _http,
    ),
    "files": _Kind(
        {"directory": str, "collections": dict}, ("directory", "collections"), _files_routes, _files
    ),
}
