"""The ``[lanes.WORKFLOW]`` rows of ``ledger.toml`` (see docs/lanes.md), every setting checked.

A lane row names a workflow's owner, the systems it touches, its stop triggers and the proof
its re-enable asks for; this module turns the TOML into `LaneConfig` or refuses it naming the
setting.
"""

from __future__ import annotations

from typing import Any, Literal

from ledger.errors import ConfigurationError, InvalidChange
from ledger.lanes import LaneConfig, check_workflow
from ledger.reenable import ReenableRule
from ledger.rollback import REPAIRS
from ledger.settings import (
    check_settings,
    config_path,
    duration,
    read_config,
    required,
    share,
    table,
)
from ledger.triggers import FieldGuard, RateLimit, Triggers, VolumeLimit


def configured_lanes(path: str | None = None) -> dict[str, LaneConfig]:
    """The lane rows, or none when there is no configuration file (a pause needs none)."""
    return load_lanes(path) if config_path(path).is_file() else {}


def load_lanes(path: str | None = None) -> dict[str, LaneConfig]:
    """The ``[lanes.WORKFLOW]`` tables (see docs/lanes.md), every setting in them checked."""
    location = config_path(path)
    data = read_config(location)
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
    check_settings(where, settings, _LANE_SETTINGS)
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


def _rate(where: str, value: Any) -> RateLimit:
    given = table(where, value, _RATE)
    return RateLimit(
        above=share(f"{where}.above", required(where, given, "above")),
        min_actions=given.get("min_actions", 1),
    )


def _volume(where: str, value: Any) -> VolumeLimit:
    given = table(where, value, _VOLUME)
    if "more_than" not in given and "above_median_percent" not in given:
        raise ConfigurationError(f"{where} needs more_than or above_median_percent")
    if given.get("runs", 5) < 1:
        raise ConfigurationError(f"{where}.runs must be at least 1")
    return VolumeLimit(
        more_than=given.get("more_than"),
        above_median_percent=given.get("above_median_percent"),
        runs=given.get("runs", 5),
    )


def _field_guard(where: str, value: Any) -> FieldGuard:
    given = table(where, value, {"order": tuple[str | int | float, ...], "at_most_percent": float})
    if not given:
        raise ConfigurationError(f"{where} needs order or at_most_percent")
    order = tuple(given.get("order", ()))
    if len(set(map(repr, order))) != len(order):
        raise ConfigurationError(f"{where}.order names a value twice")
    return FieldGuard(order=order, at_most_percent=given.get("at_most_percent"))


def _triggers(where: str, declared: Any) -> Triggers:
    given = table(where, declared, _TRIGGERS)
    fields = given.get("fields", {})
    if not isinstance(fields, dict):
        raise ConfigurationError(f"{where}.fields must be a table of fields.NAME guards")
    return Triggers(
        failure_rate=_rate(f"{where}.failure_rate", given["failure_rate"])
        if "failure_rate" in given
        else None,
        stale_rate=_rate(f"{where}.stale_rate", given["stale_rate"])
        if "stale_rate" in given
        else None,
        volume={
            operation: _volume(f"{where}.{operation}s", given[f"{operation}s"])
            for operation in ("create", "update", "delete")
            if f"{operation}s" in given
        },
        too_few=required(
            f"{where}.too_few",
            table(f"{where}.too_few", given["too_few"], {"fewer_than": int}),
            "fewer_than",
        )
        if "too_few" in given
        else None,
        fields={
            name: _field_guard(f"{where}.fields.{name}", guard) for name, guard in fields.items()
        },
        rollback_conflicts=required(
            f"{where}.rollback_conflicts",
            table(f"{where}.rollback_conflicts", given["rollback_conflicts"], {"more_than": int}),
            "more_than",
        )
        if "rollback_conflicts" in given
        else None,
        drift_share=share(
            f"{where}.drift_share.above",
            required(
                f"{where}.drift_share",
                table(f"{where}.drift_share", given["drift_share"], {"above": float}),
                "above",
            ),
        )
        if "drift_share" in given
        else None,
        source_age=duration(
            required(
                f"{where}.source_age",
                table(f"{where}.source_age", given["source_age"], {"older_than": str}),
                "older_than",
            ),
            f"{where}.source_age.older_than",
        )
        if "source_age" in given
        else None,
    )


def _reenable(where: str, declared: Any) -> ReenableRule:
    given = table(where, declared, {"reconciled": tuple[str, ...], "canary": int, "approver": bool})
    for collection in given.get("reconciled", ()):
        if collection.count("/") != 1 or not all(collection.split("/")):
            raise ConfigurationError(
                f"{where}.reconciled names {collection!r}; name collections as system/collection"
            )
    if given.get("canary") == 0:
        raise ConfigurationError(f"{where}.canary must be at least 1 action")
    return ReenableRule(
        reconciled=tuple(given.get("reconciled", ())),
        canary=given.get("canary"),
        approver=given.get("approver", False),
    )


# Checking settings against the types they must have ---------------------------------------
