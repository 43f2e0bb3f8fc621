"""Systems and their adapters, configured in one TOML file (``ledger.toml``), read once.

```toml
[systems.crm]                       # a SQL database (any SQLAlchemy URL)
type = "sql"
url = "sqlite:///crm.db"
collections.contacts = { table = "contacts", key = ["id"] }
```

The file is ``--config``, else ``$LEDGER_CONFIG``, else ``./ledger.toml``. A bad setting is
refused naming its key (``systems.crm.url``) and what was expected.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from adapters.protocol import Adapter
from ledger.errors import ConfigurationError
from ledger.rollback import REPAIRS, Contract

CONFIG_KEY = "LEDGER_CONFIG"
DEFAULT_CONFIG = "ledger.toml"


def config_path(path: str | None = None) -> Path:
    return Path(path or os.environ.get(CONFIG_KEY) or DEFAULT_CONFIG)


def load_systems(path: str | None = None) -> dict[str, dict[str, Any]]:
    """The ``[systems]`` table of the configuration file, checked for shape."""
    location = config_path(path)
    if not location.is_file():
        raise ConfigurationError(
            f"no configuration file at {location}; create ledger.toml with a [systems.NAME] "
            f"table (see docs/adapters.md), or point --config / {CONFIG_KEY} at one"
        )
    try:
        data = tomllib.loads(location.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{location} is not valid TOML: {error}") from None
    systems = data.get("systems")
    if not isinstance(systems, dict) or not systems:
        raise ConfigurationError(f"{location}: no [systems.NAME] table")
    for name, settings in systems.items():
        if not isinstance(settings, dict) or "type" not in settings:
            raise ConfigurationError(f"{location}: systems.{name}.type is missing")
        if settings["type"] not in BUILDERS:
            raise ConfigurationError(
                f"{location}: systems.{name}.type {settings['type']!r} is not one of "
                f"{', '.join(sorted(BUILDERS))}"
            )
    return systems


def open_adapter(name: str, path: str | None = None) -> Adapter:
    """The adapter for one configured system."""
    systems = load_systems(path)
    if name not in systems:
        raise ConfigurationError(
            f"no system {name!r} in {config_path(path)}; configured: {', '.join(sorted(systems))}"
        )
    settings = dict(systems[name])
    return BUILDERS[settings.pop("type")](name, settings, config_path(path).parent)


def open_adapters(path: str | None = None) -> dict[str, Adapter]:
    return {name: open_adapter(name, path) for name in load_systems(path)}


def _setting(system: str, settings: dict[str, Any], key: str, kind: type) -> Any:
    if key not in settings:
        raise ConfigurationError(f"systems.{system}.{key} is missing")
    value = settings[key]
    if not isinstance(value, kind):
        raise ConfigurationError(f"systems.{system}.{key} must be a {kind.__name__}, not {value!r}")
    return value


def _collections(system: str, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each collection's adapter settings (its ``rollback`` contract is read separately)."""
    collections = _setting(system, settings, "collections", dict)
    for name, route in collections.items():
        if not isinstance(route, dict):
            raise ConfigurationError(f"systems.{system}.collections.{name} must be a table")
    return {
        name: {key: value for key, value in route.items() if key != "rollback"}
        for name, route in collections.items()
    }


def load_contracts(path: str | None = None) -> dict[tuple[str, str], Contract]:
    """The rollback contracts declared per collection (``collections.NAME.rollback``)."""
    contracts = {}
    for system, settings in load_systems(path).items():
        for name, route in settings.get("collections", {}).items():
            declared = route.get("rollback") if isinstance(route, dict) else None
            if declared is None:
                continue
            where = f"systems.{system}.collections.{name}.rollback"
            unknown = sorted(set(declared) - {"protected", "window", "repair", "owner"})
            if unknown:
                raise ConfigurationError(
                    f"{where}.{unknown[0]} is not a setting; expected protected, window, "
                    "repair or owner"
                )
            repair = declared.get("repair")
            if repair is not None and repair not in REPAIRS:
                raise ConfigurationError(
                    f"{where}.repair {repair!r} is not one of {', '.join(REPAIRS)}"
                )
            contracts[(system, name)] = Contract(
                protected=tuple(declared.get("protected", ())),
                window=_duration(declared["window"], f"{where}.window")
                if "window" in declared
                else None,
                repair=repair,
                owner=declared.get("owner"),
            )
    return contracts


def _duration(text: Any, key: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([dhm])", str(text))
    if not match:
        raise ConfigurationError(f"{key} {text!r} must look like 7d, 12h or 30m")
    amount, unit = int(match.group(1)), match.group(2)
    return timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: amount})


def _sql(system: str, settings: dict[str, Any], base: Path) -> Adapter:
    from adapters.sql import SqlAdapter, SqlCollection

    url = _setting(system, settings, "url", str)
    collections = {}
    for name, route in _collections(system, settings).items():
        key = route.get("key", ["id"])
        key = [key] if isinstance(key, str) else key
        collections[name] = SqlCollection(
            table=route.get("table", name), key=tuple(key), schema=route.get("schema")
        )
    return SqlAdapter(system, url, collections)


def _routes(system: str, settings: dict[str, Any], route_class: type) -> dict[str, Any]:
    """Each collection's table built as `route_class(**table)`; an unknown key is named."""
    known = {f.name for f in dataclasses.fields(route_class)}
    routes = {}
    for name, route in _collections(system, settings).items():
        unknown = sorted(set(route) - known)
        if unknown:
            raise ConfigurationError(
                f"systems.{system}.collections.{name}.{unknown[0]} is not a setting; "
                f"expected some of: {', '.join(sorted(known))}"
            )
        routes[name] = route_class(**route)
    return routes


def _http(system: str, settings: dict[str, Any], base: Path) -> Adapter:
    from adapters.http import CollectionRoute, HttpAdapter

    headers = settings.get("headers", {})
    if not isinstance(headers, dict):
        raise ConfigurationError(f"systems.{system}.headers must be a table of header names")
    return HttpAdapter(
        system,
        _setting(system, settings, "base_url", str),
        _routes(system, settings, CollectionRoute),
        headers={name: os.path.expandvars(str(value)) for name, value in headers.items()},
        timeout=float(settings.get("timeout", 10.0)),
    )


def _files(system: str, settings: dict[str, Any], base: Path) -> Adapter:
    from adapters.files import CsvCollection, FileAdapter, JsonLinesCollection

    formats = {"csv": CsvCollection, "jsonl": JsonLinesCollection}
    collections: dict[str, Any] = {}
    for name, route in _collections(system, settings).items():
        route = dict(route)
        kind = route.pop("format", "csv")
        if kind not in formats:
            raise ConfigurationError(
                f"systems.{system}.collections.{name}.format must be csv or jsonl, not {kind!r}"
            )
        if isinstance(route.get("key"), list):
            route["key"] = tuple(route["key"])
        collections[name] = _routes(system, {"collections": {name: route}}, formats[kind])[name]
    directory = base / _setting(system, settings, "directory", str)
    return FileAdapter(system, directory, collections)


BUILDERS: dict[str, Callable[[str, dict[str, Any], Path], Adapter]] = {
    "sql": _sql,
    "http": _http,
    "files": _files,
}
