"""Reading ``ledger.toml`` and checking its settings strictly, for every section.

Each section (``[systems]`` in `ledger.config`, ``[lanes]`` in `ledger.lane_config`, ...)
reads the file through `read_config` and checks its tables with `check_settings`: an unknown or
mistyped setting anywhere is refused naming its key and what was expected, so a typo never
falls back to a default silently.
"""

from __future__ import annotations

import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from ledger.errors import ConfigurationError

CONFIG_KEY = "LEDGER_CONFIG"
DEFAULT_CONFIG = "ledger.toml"
SECTIONS = {
    "systems": "systems go in [systems.NAME] tables",
    "lanes": "lanes in [lanes.WORKFLOW] tables",
    "notifiers": "notifiers in [notifiers.NAME] tables",
}


def config_path(path: str | None = None) -> Path:
    """``--config``, else ``$LEDGER_CONFIG``, else ``./ledger.toml``."""
    return Path(path or os.environ.get(CONFIG_KEY) or DEFAULT_CONFIG)


def read_config(location: Path) -> dict[str, Any]:
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
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigurationError(
            f"{location}: {unknown[0]} is not a setting; " + ", ".join(SECTIONS.values())
        )
    return data


def check_settings(where: str, table: dict[str, Any], expected: Mapping[str, Any]) -> None:
    """Every key of ``table`` is one of ``expected`` and holds a value of its type."""
    unknown = sorted(set(table) - set(expected))
    if unknown:
        raise ConfigurationError(
            f"{where}.{unknown[0]} is not a setting; expected some of: "
            f"{', '.join(sorted(expected))}"
        )
    for key, value in table.items():
        if not fits(value, expected[key]):
            raise ConfigurationError(
                f"{where}.{key} must be {described(expected[key])}, not {value!r}"
            )


def fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arm) for arm in args)
    if origin is Literal:
        return value in args
    if origin is tuple:
        return isinstance(value, list | tuple) and all(fits(item, args[0]) for item in value)
    if origin in (dict, Mapping):
        return isinstance(value, dict) and all(
            fits(k, args[0]) and fits(v, args[1]) for k, v in value.items()
        )
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, hint)


def described(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(described(arm) for arm in args if arm is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin is tuple:
        return "a list of " + described(args[0])
    if origin in (dict, Mapping):
        return "a table of " + described(args[1])
    names = {str: "text", bool: "true or false", int: "a whole number", float: "a number"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def table(where: str, value: Any, expected: Mapping[str, Any]) -> dict[str, Any]:
    """A small inline table checked like any other, with non-negative numbers."""
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where} must be a table of {', '.join(expected)}")
    check_settings(where, value, expected)
    for key, number in value.items():
        if isinstance(number, int | float) and not isinstance(number, bool) and number < 0:
            raise ConfigurationError(f"{where}.{key} must not be negative, not {number!r}")
    return value


def required(where: str, table: dict[str, Any], key: str) -> Any:
    if key not in table:
        raise ConfigurationError(f"{where}.{key} is missing")
    return table[key]


def share(where: str, value: float) -> float:
    if value > 1:
        raise ConfigurationError(f"{where} is a share between 0 and 1 (0.05 is 5%), not {value}")
    return float(value)


def duration(text: Any, key: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([dhm])", str(text))
    if not match:
        raise ConfigurationError(f"{key} {text!r} must look like 7d, 12h or 30m")
    amount, unit = int(match.group(1)), match.group(2)
    return timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: amount})
