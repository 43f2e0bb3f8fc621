"""Verifying an applied rollback: every record it wrote, read back and compared exactly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ledger.domain import Address
from ledger.ports import Adapter, Relation
from ledger.rollback.model import Compensation
from ledger.rollback.report import Mismatch, RollbackReport
from ledger.rollback.targets import read_targets
from ledger.values import ABSENT, same

PAGE = 1000  # records read back from their targets at once


def verify_rollback(
    applied: Sequence[Compensation],
    adapters: dict[str, Adapter],
    report: RollbackReport,
    *,
    moved: Mapping[str, str] | None = None,
) -> list[Mismatch]:
    """Re-read every record the rollback wrote and compare it with the planned state exactly:
    each written value (and each field removed); each other field the compensation expected
    (under `skip`, the whole record), still as it was; a deleted record gone, a re-created one
    there (fields the system adds to a created record, like its own timestamps, are not the
    plan's); and every parent a written record references, present. ``report`` says where
    re-created records went (their new keys), unless ``moved`` (record -> new key) is given."""
    if moved is None:
        moved = {r.entity: r.moved_to for r in report.results if r.moved_to is not None}
    mismatches = []
    parents: dict[str, list[tuple[str, str]]] = {}  # parent address -> (record, field)
    relations: dict[tuple[str, str], tuple[Relation, ...]] = {}
    for start in range(0, len(applied), PAGE):  # a page of records read back at a time
        page = applied[start : start + PAGE]
        images = read_targets(
            adapters, [Address.parse(moved.get(c.entity, c.entity)) for c in page]
        )
        for compensation in page:
            where = moved.get(compensation.entity, compensation.entity)
            mismatch = _compare(compensation, images[where], where, adapters, relations, parents)
            if mismatch is not None:
                mismatches.append(mismatch)
    present = read_targets(adapters, map(Address.parse, parents))
    for parent, referencing in parents.items():
        if present[parent] is None:
            mismatches += [
                Mismatch(entity, (name,), missing_parent=parent) for entity, name in referencing
            ]
    return mismatches


def _compare(
    compensation: Compensation,
    record: dict[str, Any] | None,
    where: str,
    adapters: dict[str, Adapter],
    relations: dict[tuple[str, str], tuple[Relation, ...]],
    parents: dict[str, list[tuple[str, str]]],
) -> Mismatch | None:
    """One record read back against its compensation; the parents it references are added to
    ``parents`` (checked at the end, once each)."""
    differing: dict[str, Any] = {}
    if compensation.operation == "delete":
        if record is not None:
            differing["(record)"] = "exists"
    elif record is None:
        differing["(record)"] = "absent"
    else:
        planned = {
            **(compensation.expected if compensation.operation == "update" else {}),
            **compensation.values,
            **dict.fromkeys(compensation.unset, ABSENT),
        }
        differing = {
            name: record.get(name, ABSENT)
            for name, value in planned.items()
            if not same(record.get(name, ABSENT), value)
        }
        address = Address.parse(where)
        collection = (address.system, address.collection)
        if collection not in relations:
            relations[collection] = adapters[address.system].relations(address.collection)
        for relation in relations[collection]:
            value = record.get(relation.field)
            if value is not None and not isinstance(value, (dict, list)):
                parent = f"{address.system}/{relation.parent}/{value}"
                parents.setdefault(parent, []).append((compensation.entity, relation.field))
    if not differing:
        return None
    return Mismatch(compensation.entity, tuple(sorted(differing)), holds=differing)
