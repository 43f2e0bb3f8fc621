"""The ``[notifiers.NAME]`` tables of ``ledger.toml``, every setting checked, into notifiers.

```toml
[notifiers.ops-webhook]
type = "webhook"
url = "https://ops.example.com/hooks/ledger"
secret_env = "LEDGER_WEBHOOK_SECRET"   # the variable holding the secret, never the secret
timeout = 5
retries = 3

[notifiers.pager]
type = "command"
argv = ["/usr/local/bin/page-oncall", "--team", "crm"]

[notifiers.log]
type = "log"
```

A lane names its notifiers (``notify = ["ops-webhook", "log"]``); `check_routes` refuses a lane
naming one that is not configured.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

import httpx

from ledger.errors import ConfigurationError
from ledger.lanes import LaneConfig
from ledger.notify.command import Command
from ledger.notify.log import LogNotifier
from ledger.notify.notifier import Notifier
from ledger.notify.webhook import Webhook
from ledger.settings import check_settings, config_path, read_config

_TYPES = ("webhook", "command", "log")
_SETTINGS: dict[str, dict[str, Any]] = {
    "webhook": {
        "type": str,
        "url": str,
        "secret_env": str,
        "timeout": float,
        "retries": int,
        "backoff": float,
    },
    "command": {"type": str, "argv": tuple[str, ...], "timeout": float},
    "log": {"type": str, "level": Literal["info", "warning", "error"]},
}


def load_notifiers(path: str | None = None) -> dict[str, Notifier]:
    """The configured notifiers by name (none when the file has no ``[notifiers]``)."""
    location = config_path(path)
    declared = read_config(location).get("notifiers", {})
    if not isinstance(declared, dict):
        raise ConfigurationError(f"{location}: notifiers must be [notifiers.NAME] tables")
    return {name: notifier(name, settings) for name, settings in declared.items()}


def notifier(name: str, settings: Any) -> Notifier:
    """One ``[notifiers.NAME]`` table as a notifier, or the setting that is wrong."""
    where = f"notifiers.{name}"
    if not isinstance(settings, dict):
        raise ConfigurationError(f"{where} must be a table")
    kind = settings.get("type")
    if kind not in _TYPES:
        raise ConfigurationError(
            f"{where}.type must be one of {', '.join(map(repr, _TYPES))}, not {kind!r}"
        )
    if "secret" in settings:
        raise ConfigurationError(
            f"{where}.secret: never write a secret in ledger.toml; put it in an environment "
            "variable and name that variable with secret_env"
        )
    check_settings(where, settings, _SETTINGS[kind])
    for key in ("timeout", "retries", "backoff"):
        if settings.get(key, 1) < 0 or (key == "timeout" and settings.get(key) == 0):
            raise ConfigurationError(f"{where}.{key} must be positive, not {settings[key]!r}")
    if kind == "webhook":
        return Webhook(
            name,
            _url(where, _required(where, settings, "url")),
            _secret(where, _required(where, settings, "secret_env")),
            timeout=float(settings.get("timeout", 5.0)),
            retries=settings.get("retries", 3),
            backoff=float(settings.get("backoff", 0.5)),
        )
    if kind == "command":
        argv = tuple(_required(where, settings, "argv"))
        if not argv or not argv[0]:
            raise ConfigurationError(f"{where}.argv must name the program to run")
        return Command(name, argv, timeout=float(settings.get("timeout", 30.0)))
    return LogNotifier(name, level=settings.get("level", "warning"))


def check_routes(lanes: Mapping[str, LaneConfig], notifiers: Mapping[str, Notifier]) -> None:
    """Every notifier a lane names is configured."""
    for workflow, lane in sorted(lanes.items()):
        for name in lane.notify:
            if name not in notifiers:
                configured = ", ".join(sorted(notifiers)) or "none is configured"
                raise ConfigurationError(
                    f"lanes.{workflow}.notify names {name!r}, which is not a configured notifier "
                    f"([notifiers.NAME]: {configured})"
                )


def _required(where: str, settings: dict[str, Any], key: str) -> Any:
    if key not in settings:
        raise ConfigurationError(f"{where}.{key} is missing")
    return settings[key]


def _url(where: str, url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ConfigurationError(f"{where}.url {url!r} is not a URL: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(f"{where}.url {url!r} must be an http:// or https:// URL")
    return url


def _secret(where: str, variable: str) -> bytes:
    value = os.environ.get(variable)
    if not value:
        raise ConfigurationError(
            f"{where}.secret_env names {variable}, which is not set (or empty); set it to the "
            "webhook's shared secret"
        )
    return value.encode("utf-8")
