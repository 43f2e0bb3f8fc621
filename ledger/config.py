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

Over 400 lines for now: systems, contracts and lanes share the one strict checker
(`_check_settings`, `_fits`); splitting the lane rows into a module of their own is next.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from ledger.errors import ConfigurationError, InvalidChange
from ledger.lanes import LaneConfig, check_workflow
from ledger.ports import Adapter
from ledger.reenable import ReenableRule
from ledger.rollback import REPAIRS, Contract
from ledger.triggers import FieldGuard, RateLimit, Triggers, VolumeLimit

CONFIG_KEY = "LEDGER_CONFIG"
DEFAULT_CONFIG = "ledger.toml"
TARGET_CONNECT_TIMEOUT = "10"  # seconds; a PostgreSQL target that does not answer fails fast
CONTRACT_SETTINGS = ("protected", "window", "repair", "owner")


def config_path(path: str | None = None) -> Path:
    return Path(path or os.environ.get(CONFIG_KEY) or DEFAULT_CONFIG)


def load_systems(path: str | None = None) -> dict[str, dict[str, Any]]:
    """The ``[systems]`` table of the configuration file, every setting in it checked."""
    location = config_path(path)
    data = _read(location)
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
        _check_settings(f"systems.{name}", settings, {"type": str, **kind.settings})
        missing = [key for key in kind.required if key not in settings]
        if missing:
            raise ConfigurationError(f"systems.{name}.{missing[0]} is missing")
        kind.routes(name, settings)
        for collection, route in settings.get("collections", {}).items():
            if "rollback" in route:
                _contract(f"systems.{name}.collections.{collection}.rollback", route["rollback"])
    return systems


def _read(location: Path) -> dict[str, Any]:
    """The configuration file's tables, its top-level keys checked."""
    if not location.is_file():
        raise ConfigurationError(
            f"no configuration file at {location}; create ledger.toml with a [systems.NAME] "
            f"table (see docs/adapters.md), or point --config / {CONFIG_KEY} at one"
        )
    try:
        content = location.read_bytes()
        data = tomllib.loads(content.decode("utf-8"))
    except UnicodeDecodeError as error:
        line = content.count(b"\n", 0, error.start) + 1
        raise ConfigurationError(
            f"{location} is not UTF-8 text (line {line}: byte {content[error.start]:#04x}); "
            "save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{location} is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigurationError(f"{location} cannot be read: {error.strerror}") from None
    unknown = sorted(set(data) - {"systems", "lanes"})
    if unknown:
        raise ConfigurationError(
            f"{location}: {unknown[0]} is not a setting; systems go in [systems.NAME] tables, "
            "lanes in [lanes.WORKFLOW] tables"
        )
    return data


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


def load_lanes(path: str | None = None) -> dict[str, LaneConfig]:
    """The ``[lanes.WORKFLOW]`` tables (see docs/lanes.md), every setting in them checked."""
    location = config_path(path)
    data = _read(location)
    declared = data.get("lanes", {})
    if not isinstance(declared, dict):
        raise ConfigurationError(f"{location}: lanes must be [lanes.WORKFLOW] tables")
    systems = data.get("systems")
    return {
        workflow: _lane(workflow, settings, None if systems is None else set(systems))
        for workflow, settings in declared.items()
    }


_LANE_SETTINGS: dict[str, Any] = {
    "owner": str,
    "systems": tuple[str, ...],
    "notify": tuple[str, ...],
    "repair": str,
    "receipt_fields": tuple[str, ...],
    "approval": Literal["none", "two-person"],
    "on_trip": Literal["pause", "plan-rollback"],
    "triggers": object,  # tables, checked by _triggers and _reenable with their own messages
    "reenable": object,
}
_RATE = {"above": float, "min_actions": int}
_VOLUME = {"more_than": int, "above_median_percent": float, "runs": int}
_TRIGGERS = dict.fromkeys(  # each an inline table, checked by its own reader
    (
        "failure_rate",
        "stale_rate",
        "creates",
        "updates",
        "deletes",
        "too_few",
        "fields",
        "rollback_conflicts",
        "drift_share",
        "source_age",
    ),
    object,
)


def _lane(workflow: str, settings: Any, systems: set[str] | None) -> LaneConfig:
    where = f"lanes.{workflow}"
    if not isinstance(settings, dict):
        raise ConfigurationError(f"{where} must be a table")
    try:
        check_workflow(workflow)
    except InvalidChange as error:
        raise ConfigurationError(f"{where}: {error}") from None
    _check_settings(where, settings, _LANE_SETTINGS)
    repair = settings.get("repair")
    if repair is not None and repair not in ("rollback", *REPAIRS):
        raise ConfigurationError(
            f"{where}.repair {repair!r} is not one of rollback, {', '.join(REPAIRS)}"
        )
    unknown = [name for name in settings.get("systems", ()) if systems and name not in systems]
    if unknown:
        raise ConfigurationError(
            f"{where}.systems names {unknown[0]!r}, which is not a configured system "
            f"({', '.join(sorted(systems or ()))})"
        )
    return LaneConfig(
        workflow=workflow,
        owner=settings.get("owner"),
        systems=tuple(settings.get("systems", ())),
        notify=tuple(settings.get("notify", ())),
        repair=repair,
        receipt_fields=tuple(settings.get("receipt_fields", ())),
        approval=settings.get("approval", "none"),
        on_trip=settings.get("on_trip", "pause"),
        triggers=_triggers(f"{where}.triggers", settings.get("triggers", {})),
        reenable=_reenable(f"{where}.reenable", settings.get("reenable", {})),
    )


def _table(where: str, value: Any, expected: Mapping[str, Any]) -> dict[str, Any]:
    """A small inline table checked like any other, with non-negative numbers."""
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where} must be a table of {', '.join(expected)}")
    _check_settings(where, value, expected)
    for key, number in value.items():
        if isinstance(number, int | float) and not isinstance(number, bool) and number < 0:
            raise ConfigurationError(f"{where}.{key} must not be negative, not {number!r}")
    return value


def _required(where: str, table: dict[str, Any], key: str) -> Any:
    if key not in table:
        raise ConfigurationError(f"{where}.{key} is missing")
    return table[key]


def _share(where: str, value: float) -> float:
    if value > 1:
        raise ConfigurationError(f"{where} is a share between 0 and 1 (0.05 is 5%), not {value}")
    return float(value)


def _rate(where: str, value: Any) -> RateLimit:
    table = _table(where, value, _RATE)
    return RateLimit(
        above=_share(f"{where}.above", _required(where, table, "above")),
        min_actions=table.get("min_actions", 1),
    )


def _volume(where: str, value: Any) -> VolumeLimit:
    table = _table(where, value, _VOLUME)
    if "more_than" not in table and "above_median_percent" not in table:
        raise ConfigurationError(f"{where} needs more_than or above_median_percent")
    if table.get("runs", 5) < 1:
        raise ConfigurationError(f"{where}.runs must be at least 1")
    return VolumeLimit(
        more_than=table.get("more_than"),
        above_median_percent=table.get("above_median_percent"),
        runs=table.get("runs", 5),
    )


def _field_guard(where: str, value: Any) -> FieldGuard:
    table = _table(where, value, {"order": tuple[str | int | float, ...], "at_most_percent": float})
    if not table:
        raise ConfigurationError(f"{where} needs order or at_most_percent")
    order = tuple(table.get("order", ()))
    if len(set(map(repr, order))) != len(order):
        raise ConfigurationError(f"{where}.order names a value twice")
    return FieldGuard(order=order, at_most_percent=table.get("at_most_percent"))


def _triggers(where: str, declared: Any) -> Triggers:
    table = _table(where, declared, _TRIGGERS)
    fields = table.get("fields", {})
    if not isinstance(fields, dict):
        raise ConfigurationError(f"{where}.fields must be a table of fields.NAME guards")
    return Triggers(
        failure_rate=_rate(f"{where}.failure_rate", table["failure_rate"])
        if "failure_rate" in table
        else None,
        stale_rate=_rate(f"{where}.stale_rate", table["stale_rate"])
        if "stale_rate" in table
        else None,
        volume={
            operation: _volume(f"{where}.{operation}s", table[f"{operation}s"])
            for operation in ("create", "update", "delete")
            if f"{operation}s" in table
        },
        too_few=_required(
            f"{where}.too_few",
            _table(f"{where}.too_few", table["too_few"], {"fewer_than": int}),
            "fewer_than",
        )
        if "too_few" in table
        else None,
        fields={
            name: _field_guard(f"{where}.fields.{name}", guard) for name, guard in fields.items()
        },
        rollback_conflicts=_required(
            f"{where}.rollback_conflicts",
            _table(f"{where}.rollback_conflicts", table["rollback_conflicts"], {"more_than": int}),
            "more_than",
        )
        if "rollback_conflicts" in table
        else None,
        drift_share=_share(
            f"{where}.drift_share.above",
            _required(
                f"{where}.drift_share",
                _table(f"{where}.drift_share", table["drift_share"], {"above": float}),
                "above",
            ),
        )
        if "drift_share" in table
        else None,
        source_age=_duration(
            _required(
                f"{where}.source_age",
                _table(f"{where}.source_age", table["source_age"], {"older_than": str}),
                "older_than",
            ),
            f"{where}.source_age.older_than",
        )
        if "source_age" in table
        else None,
    )


def _reenable(where: str, declared: Any) -> ReenableRule:
    table = _table(
        where, declared, {"reconciled": tuple[str, ...], "canary": int, "approver": bool}
    )
    for collection in table.get("reconciled", ()):
        if collection.count("/") != 1 or not all(collection.split("/")):
            raise ConfigurationError(
                f"{where}.reconciled names {collection!r}; name collections as system/collection"
            )
    if table.get("canary") == 0:
        raise ConfigurationError(f"{where}.canary must be at least 1 action")
    return ReenableRule(
        reconciled=tuple(table.get("reconciled", ())),
        canary=table.get("canary"),
        approver=table.get("approver", False),
    )


# Checking settings against the types they must have ---------------------------------------


def _check_settings(where: str, table: dict[str, Any], expected: Mapping[str, Any]) -> None:
    """Every key of ``table`` is one of ``expected`` and holds a value of its type."""
    unknown = sorted(set(table) - set(expected))
    if unknown:
        raise ConfigurationError(
            f"{where}.{unknown[0]} is not a setting; expected some of: "
            f"{', '.join(sorted(expected))}"
        )
    for key, value in table.items():
        if not _fits(value, expected[key]):
            raise ConfigurationError(
                f"{where}.{key} must be {_described(expected[key])}, not {value!r}"
            )


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in args)
    if origin is Literal:
        return value in args
    if origin is tuple:
        return isinstance(value, list | tuple) and all(_fits(item, args[0]) for item in value)
    if origin in (dict, Mapping):
        return isinstance(value, dict) and all(
            _fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items()
        )
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, hint)


def _described(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_described(arm) for arm in args if arm is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin is tuple:
        return "a list of " + _described(args[0])
    if origin in (dict, Mapping):
        return "a table of " + _described(args[1])
    names = {str: "text", bool: "true or false", int: "a whole number", float: "a number"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _route(where: str, route_class: type, route: dict[str, Any]) -> Any:
    """A collection's table built as `route_class(**route)`, checked against its fields."""
    hints = typing.get_type_hints(route_class)
    _check_settings(
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
    _check_settings(
        where,
        declared,
        {"protected": tuple[str, ...], "window": str, "repair": str, "owner": str},
    )
    repair = declared.get("repair")
    if repair is not None and repair not in REPAIRS:
        raise ConfigurationError(f"{where}.repair {repair!r} is not one of {', '.join(REPAIRS)}")
    return Contract(
        protected=tuple(declared.get("protected", ())),
        window=_duration(declared["window"], f"{where}.window") if "window" in declared else None,
        repair=repair,
        owner=declared.get("owner"),
    )


def _duration(text: Any, key: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([dhm])", str(text))
    if not match:
        raise ConfigurationError(f"{key} {text!r} must look like 7d, 12h or 30m")
    amount, unit = int(match.group(1)), match.group(2)
    return timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: amount})


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
