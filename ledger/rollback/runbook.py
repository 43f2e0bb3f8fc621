"""A rollback plan as a markdown runbook a person reads, approves and keeps.

Rendering only. It reads the plan through `PlanShown` (the attributes a runbook shows) so that
`RollbackPlan.runbook()` can delegate here without this module importing the plan's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from ledger.encoding import encode_value
from ledger.relations import Caution
from ledger.rollback.model import Compensation, Conflict, FollowUp, RollbackScope
from ledger.values import ABSENT


class PlanShown(Protocol):
    """What a runbook shows of a plan (`RollbackPlan` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def verb(self) -> str: ...
    @property
    def batch(self) -> str: ...
    @property
    def scope(self) -> RollbackScope: ...
    @property
    def policy(self) -> str: ...
    @property
    def missing_parent(self) -> str: ...
    @property
    def position(self) -> int: ...
    @property
    def aborted(self) -> bool: ...
    @property
    def cautions(self) -> Sequence[Caution]: ...
    @property
    def compensations(self) -> Sequence[Compensation]: ...
    @property
    def conflicts(self) -> Sequence[Conflict]: ...
    @property
    def already_rolled_back(self) -> Sequence[str]: ...
    @property
    def followups(self) -> Sequence[FollowUp]: ...
    @property
    def planner(self) -> str | None: ...
    @property
    def workflows(self) -> Sequence[str]: ...


def show(value: Any) -> str:
    """A value as its edge JSON, ABSENT as "(absent)": for runbooks and refusal messages."""
    return "(absent)" if value is ABSENT else orjson.dumps(encode_value(value)).decode()


def render_runbook(plan: PlanShown) -> str:
    """The plan as a human-readable runbook (markdown)."""
    lines = [
        f"# {plan.verb.capitalize()} {plan.id}",
        "",
        f"Scope: {plan.scope.describe()}. Policy: `{plan.policy}`; records whose parent is "
        f"gone: `{plan.missing_parent}`. Planned at log position {plan.position}"
        + (f" by {plan.planner}" if plan.planner else "")
        + ".",
        "",
    ]
    if plan.workflows:
        lines += [f"Workflows whose actions it reverses: {', '.join(plan.workflows)}.", ""]
    if plan.aborted:
        lines += [
            "**Aborted**: conflicts exist and the policy is `abort`, or a record's parent is "
            "gone and the missing-parent policy is `abort`; nothing will change.",
            "",
        ]
    if plan.cautions:
        lines += [f"## Before you apply ({len(plan.cautions)})", ""]
        lines += [f"- **{c.entity}**: {c.reason}." for c in plan.cautions]
        lines.append("")
    lines += [f"## What will change ({len(plan.compensations)} records, in this order)", ""]
    if plan.compensations:
        lines += [
            "| # | record | action | fields | expected now → restored |",
            "|---|---|---|---|---|",
        ]
        for number, c in enumerate(plan.compensations, start=1):
            fields = sorted(set(c.values) | set(c.unset) | set(c.expected))
            change = ", ".join(
                f"{f}: {show(c.expected.get(f, ABSENT))} → {show(c.values.get(f, ABSENT))}"
                for f in fields
            )
            lines.append(f"| {number} | {c.entity} | {c.kind} | {len(fields)} | {change} |")
    else:
        lines.append("Nothing.")
    if any(c.new_key for c in plan.compensations):
        lines += [
            "",
            "Records marked *new key* come back under a key their system assigns; the "
            "ledger records where each went, and `ledger history` / `ledger state` of the "
            "old key follow it.",
        ]
    lines += ["", f"## Conflicts ({len(plan.conflicts)})", ""]
    if plan.conflicts:
        lines += ["| record | why | fields | competing values |", "|---|---|---|---|"]
        for conflict in plan.conflicts:
            competing = "; ".join(
                ", ".join(f"{k}={show(v)}" for k, v in item.items()) for item in conflict.competing
            )
            lines.append(
                f"| {conflict.entity} | {conflict.reason} | {', '.join(conflict.fields)} | "
                f"{competing} |"
            )
    else:
        lines.append("None.")
    if plan.already_rolled_back:
        lines += ["", f"Already rolled back: {', '.join(plan.already_rolled_back)}."]
    lines += [
        "",
        "## Manual follow-ups",
        "",
        *(
            [
                f"- **{f.action}** {f.entity}: {f.reason}"
                + (f" (owner: {f.owner})" if f.owner else "")
                for f in plan.followups
            ]
            or ["None: every action in scope is reversible by a write."]
        ),
        "",
        "## How to verify",
        "",
        "`ledger rollback apply --plan PLAN.json` re-reads every record it wrote and "
        "reports any that does not hold the planned state; `ledger history ENTITY` shows "
        f"each compensation in batch `{plan.batch}`.",
        "",
    ]
    return "\n".join(lines)
