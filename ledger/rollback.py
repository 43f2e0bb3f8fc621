"""Rolling back: a plan first (pure, printable, saveable), then compensations applied exactly once.

Planning reads the ledger and the targets and changes nothing. For every record a scope
touched, the net compensation restores the state from before the scope's earliest action on
it, for the fields the scope touched. A record someone else changed afterwards — a later
action outside the scope, or drift the target shows — is a conflict, handled by the policy:

- ``skip`` (default): record-level — a record anything else changed since the scope acted on
  it (a later action, or drift in any field the ledger knows, touched by the scope or not) is
  left exactly as it is and listed for review; applying, the whole record must still be as
  planning saw it;
- ``fields``: restore the scope's fields that nobody else changed since, keep the rest;
- ``force``: restore anyway (still compare-and-set against what planning saw);
- ``abort``: plan nothing if any conflict exists.

Applying runs the compensations through `ledger.runs.Run`, newest first across all systems, each
compare-and-set against the values the plan expects: a record that moved between planning and
applying is skipped and listed, never overwritten. Each compensation is an ordinary action in
the rollback's own batch, linked to the actions it compensates by the event's own
``compensates`` field (never by its inputs), so a rollback resumes after a crash, applies
nothing twice, and can itself be inspected and rolled back.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

import orjson

from ledger.application import Ledger
from ledger.changes import OBSERVED_BATCH, Change
from ledger.domain import MOVE, TRACK, Address, Entity, fold
from ledger.encoding import encode_value
from ledger.errors import InvalidChange, NotFound
from ledger.plan_seal import digest, seal, unseal
from ledger.points import Point
from ledger.ports import Adapter, Relation
from ledger.relations import Caution, Moves, cascade_cautions, follow_parents
from ledger.runs import Outcome, Run, Target
from ledger.values import ABSENT, same

POLICIES = ("skip", "fields", "force", "abort")
MISSING_PARENT = ("skip", "abort")  # a re-created record whose parent record is gone
ON_FAILURE = ("continue", "stop")  # when the target refuses a compensation
HISTORY_PAGE = 1000  # records whose histories are read at once while planning
APPLY_CHUNK = (
    2000  # compensations per run chunk: per chunk, three commits (intents, target, settle)
)
PLAN_FORMAT = "changeledger/rollback-plan/2"
ALREADY = "already applied by an earlier run of this rollback"


@dataclass(frozen=True)
class Scope:
    """Which actions to reverse: batches, or a workflow's (or everyone's) actions since a point."""

    batches: tuple[str, ...] = ()
    workflow: str | None = None
    since: str | None = None  # a point: checkpoint name, time, position:N
    system: str | None = None
    collection: str | None = None

    def describe(self) -> str:
        parts = []
        if self.batches:
            parts.append(f"batch {', '.join(self.batches)}")
        if self.workflow:
            parts.append(f"workflow {self.workflow}")
        if self.since:
            parts.append(f"since {self.since}")
        if self.system:
            parts.append(f"in {self.system}" + (f"/{self.collection}" if self.collection else ""))
        return "; ".join(parts) or "everything"


@dataclass(frozen=True)
class Compensation:
    """The net write that restores one record: values to set, fields to remove, or existence."""

    entity: str
    operation: str  # "update", "create" (re-create) or "delete"
    values: dict[str, Any]
    unset: tuple[str, ...]
    expected: dict[str, Any]  # what the target must still hold (compare-and-set)
    compensates: tuple[str, ...]  # fingerprints of the actions it undoes, newest first
    position: int  # the newest of those actions' log position: the order key
    new_key: bool = False  # a re-create the system will store under a key of its choosing

    @property
    def kind(self) -> str:
        kind = {"update": "restore", "create": "re-create", "delete": "delete"}[self.operation]
        return f"{kind} (new key)" if self.new_key else kind


@dataclass(frozen=True)
class Conflict:
    """A record changed after the scope by someone else: the competing values and who made them."""

    entity: str
    reason: str  # "later action", "drift in the target" or "missing parent"
    fields: tuple[str, ...]
    competing: tuple[dict[str, Any], ...] = ()


REPAIRS = ("notify", "amend", "reopen", "revoke", "rerun")


@dataclass(frozen=True)
class Contract:
    """What a rollback may do in one collection, declared in ``ledger.toml``.

    ``protected`` fields are never changed by a rollback; actions older than ``window`` are not
    reversed automatically; a ``repair`` marks the collection's actions as irreversible by nature
    (an email sent, a webhook called): the plan lists that repair, with its ``owner``, instead."""

    protected: tuple[str, ...] = ()
    window: timedelta | None = None
    repair: str | None = None
    owner: str | None = None


@dataclass(frozen=True)
class FollowUp:
    """Something a person must do, because a contract kept the rollback from doing it."""

    entity: str
    action: str  # a repair verb, or "review"
    reason: str
    owner: str | None = None


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback will do, computed at one log position; apply re-checks every record."""

    id: str
    scope: Scope
    policy: str
    position: int
    compensations: tuple[Compensation, ...]
    conflicts: tuple[Conflict, ...]
    already_rolled_back: tuple[str, ...] = ()
    aborted: bool = False
    followups: tuple[FollowUp, ...] = ()
    direction: str = "undo"  # "undo" (a rollback) or "redo" (a replay)
    missing_parent: str = "skip"
    cautions: tuple[Caution, ...] = ()  # to check before applying (a parent's deletion)

    @property
    def verb(self) -> str:
        return "rollback" if self.direction == "undo" else "replay"

    @property
    def batch(self) -> str:
        return f"{self.verb}-{self.id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scope": asdict(self.scope),
            "policy": self.policy,
            "position": self.position,
            "aborted": self.aborted,
            "compensations": [
                {
                    **asdict(c),
                    "kind": c.kind,
                    "values": encode_value(c.values),
                    "expected": encode_value(c.expected),
                }
                for c in self.compensations
            ],
            "conflicts": [encode_value(asdict(c)) for c in self.conflicts],
            "already_rolled_back": list(self.already_rolled_back),
            "followups": [asdict(f) for f in self.followups],
            "direction": self.direction,
            "missing_parent": self.missing_parent,
            "cautions": [asdict(c) for c in self.cautions],
        }

    def dumps(self) -> bytes:
        """The plan saved exactly (typed values kept) and sealed, to apply later with `loads`."""
        return seal(PLAN_FORMAT, asdict(self))

    @classmethod
    def loads(cls, data: bytes) -> RollbackPlan:
        """A saved plan; refused if it is not one, or if it was altered after it was saved."""
        raw = unseal(PLAN_FORMAT, data, "ledger rollback plan --out")
        try:
            return cls(
                id=raw["id"],
                scope=Scope(**{**raw["scope"], "batches": tuple(raw["scope"]["batches"])}),
                policy=raw["policy"],
                position=raw["position"],
                compensations=tuple(
                    Compensation(
                        **{**c, "unset": tuple(c["unset"]), "compensates": tuple(c["compensates"])}
                    )
                    for c in raw["compensations"]
                ),
                conflicts=tuple(
                    Conflict(
                        **{**c, "fields": tuple(c["fields"]), "competing": tuple(c["competing"])}
                    )
                    for c in raw["conflicts"]
                ),
                already_rolled_back=tuple(raw["already_rolled_back"]),
                aborted=raw["aborted"],
                followups=tuple(FollowUp(**f) for f in raw["followups"]),
                direction=raw["direction"],
                missing_parent=raw["missing_parent"],
                cautions=tuple(Caution(**c) for c in raw["cautions"]),
            )
        except (KeyError, TypeError) as error:  # sealed, but by another version of the ledger
            raise InvalidChange(
                f"the saved plan does not have this version's shape ({error}); plan again",
                field="plan",
            ) from None

    def runbook(self) -> str:
        """The plan as a human-readable runbook (markdown)."""
        lines = [
            f"# {self.verb.capitalize()} {self.id}",
            "",
            f"Scope: {self.scope.describe()}. Policy: `{self.policy}`; records whose parent is "
            f"gone: `{self.missing_parent}`. Planned at log position {self.position}.",
            "",
        ]
        if self.aborted:
            lines += [
                "**Aborted**: conflicts exist and the policy is `abort`, or a record's parent is "
                "gone and the missing-parent policy is `abort`; nothing will change.",
                "",
            ]
        if self.cautions:
            lines += [f"## Before you apply ({len(self.cautions)})", ""]
            lines += [f"- **{c.entity}**: {c.reason}." for c in self.cautions]
            lines.append("")
        lines += [f"## What will change ({len(self.compensations)} records, in this order)", ""]
        if self.compensations:
            lines += [
                "| # | record | action | fields | expected now → restored |",
                "|---|---|---|---|---|",
            ]
            for number, c in enumerate(self.compensations, start=1):
                fields = sorted(set(c.values) | set(c.unset) | set(c.expected))
                change = ", ".join(
                    f"{f}: {_show(c.expected.get(f, ABSENT))} → {_show(c.values.get(f, ABSENT))}"
                    for f in fields
                )
                lines.append(f"| {number} | {c.entity} | {c.kind} | {len(fields)} | {change} |")
        else:
            lines.append("Nothing.")
        if any(c.new_key for c in self.compensations):
            lines += [
                "",
                "Records marked *new key* come back under a key their system assigns; the "
                "ledger records where each went, and `ledger history` / `ledger state` of the "
                "old key follow it.",
            ]
        lines += ["", f"## Conflicts ({len(self.conflicts)})", ""]
        if self.conflicts:
            lines += ["| record | why | fields | competing values |", "|---|---|---|---|"]
            for conflict in self.conflicts:
                competing = "; ".join(
                    ", ".join(f"{k}={_show(v)}" for k, v in item.items())
                    for item in conflict.competing
                )
                lines.append(
                    f"| {conflict.entity} | {conflict.reason} | {', '.join(conflict.fields)} | "
                    f"{competing} |"
                )
        else:
            lines.append("None.")
        if self.already_rolled_back:
            lines += ["", f"Already rolled back: {', '.join(self.already_rolled_back)}."]
        lines += [
            "",
            "## Manual follow-ups",
            "",
            *(
                [
                    f"- **{f.action}** {f.entity}: {f.reason}"
                    + (f" (owner: {f.owner})" if f.owner else "")
                    for f in self.followups
                ]
                or ["None: every action in scope is reversible by a write."]
            ),
            "",
            "## How to verify",
            "",
            "`ledger rollback apply --plan PLAN.json` re-reads every record it wrote and "
            "reports any that does not hold the planned state; `ledger history ENTITY` shows "
            f"each compensation in batch `{self.batch}`.",
            "",
        ]
        return "\n".join(lines)


def _show(value: Any) -> str:
    return "(absent)" if value is ABSENT else orjson.dumps(encode_value(value)).decode()


@dataclass
class RollbackReport:
    """One outcome per record — restored, re-created, deleted, skipped, failed (or not
    attempted, after a stop on failure) — with counts."""

    plan: RollbackPlan
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False  # the rollback had been applied to the end before: nothing done

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome["outcome"]] = counts.get(outcome["outcome"], 0) + 1
        return counts

    @property
    def needs_attention(self) -> list[dict[str, Any]]:
        """Records a person must look at: skipped (a conflict), failed, or not attempted."""
        return [o for o in self.outcomes if o["outcome"] in ("skipped", "failed", "not attempted")]

    @property
    def refused(self) -> list[dict[str, Any]]:
        """Writes this run did not make: refused as stale, failed, or not attempted."""
        return [
            o
            for o in self.outcomes
            if o.get("refused") or o["outcome"] in ("failed", "not attempted")
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            self.plan.verb: self.plan.id,
            "batch": self.plan.batch,
            "counts": self.counts,
            "needs_attention": [o["entity"] for o in self.needs_attention],
            "outcomes": self.outcomes,
            "already_applied": self.finished,
            "verification": {"mismatches": self.mismatches, "clean": not self.mismatches},
        }


# Planning ---------------------------------------------------------------------------------


def plan(
    ledger: Ledger,
    scope: Scope,
    adapters: dict[str, Adapter],
    *,
    policy: str = "skip",
    contracts: dict[tuple[str, str], Contract] | None = None,
    direction: str = "undo",
    missing_parent: str = "skip",
    collections: Mapping[str, Sequence[str]] | None = None,
) -> RollbackPlan:
    """Compute the rollback of a scope (``direction="redo"``: its replay); reads only.
    ``contracts`` are keyed by (system, collection). ``missing_parent`` says what happens to a
    record whose restored state references a parent record that is gone: ``skip`` it (listed
    as a conflict) or ``abort`` the whole plan. ``collections`` names every collection of each
    system (default: those in the plan), so that deleting a record that others reference
    comes with a caution."""
    if policy not in POLICIES:
        raise InvalidChange(
            f"policy {policy!r} is not one of {', '.join(POLICIES)}", field="policy"
        )
    if missing_parent not in MISSING_PARENT:
        raise InvalidChange(
            f"missing-parent policy {missing_parent!r} is not one of {', '.join(MISSING_PARENT)}",
            field="missing_parent",
        )
    if not scope.batches and scope.since is None:
        raise InvalidChange("a rollback scope needs batches or a --since point", field="scope")
    position = ledger.recorder.max_notification_id() or 0
    by_entity, addresses, scoped = _scope_actions(ledger, scope, position)
    if not by_entity and scope.batches:
        known = {b.name for b in ledger.batches()}
        missing = [b for b in scope.batches if b not in known]
        if missing:
            raise InvalidChange(
                f"no batch named {missing[0]!r}; see `ledger batches`", field="batch"
            )
    compensations: list[Compensation] = []
    conflicts: list[Conflict] = []
    done: list[str] = []
    images = _read_targets(adapters, addresses.values())
    followups: list[FollowUp] = []
    now = datetime.now(UTC)
    for entity_id, history in _histories(ledger, list(by_entity), position):
        actions = by_entity[entity_id]
        address = addresses[entity_id]
        contract = (contracts or {}).get((address.system, address.collection), Contract())
        held = _held_by_contract(address, history, actions, contract, now)
        if held is not None:
            followups.append(held)
            continue
        outcome = _plan_entity(
            address,
            history,
            actions,
            scoped,
            images[str(address)],
            policy,
            contract.protected,
            direction,
        )
        in_scope = {version for version, _, _ in actions}
        changed = {
            f for e in history if e.originator_version in in_scope for f in (*e.before, *e.after)
        }
        kept = sorted(changed & set(contract.protected))
        if kept and outcome != "already":
            followups.append(
                FollowUp(
                    str(address),
                    "review",
                    f"protected field(s) {', '.join(kept)} left as they are",
                    contract.owner,
                )
            )
        if outcome == "already":
            done.append(str(address))
        elif isinstance(outcome, tuple):
            compensation, conflict = outcome
            if compensation is not None:
                compensations.append(compensation)
            if conflict is not None:
                conflicts.append(conflict)
    compensations.sort(key=lambda c: c.position, reverse=True)
    compensations, orphans = _order_by_relations(compensations, adapters)
    aborted = (policy == "abort" and bool(conflicts)) or (
        missing_parent == "abort" and bool(orphans)
    )
    if aborted:
        compensations = []
    # The id names what the plan does, not only where it was made: two plans made at the same
    # position against different target states are two rollbacks, never one batch.
    plan_id = digest(
        {
            "scope": asdict(scope),
            "policy": policy,
            "position": position,
            "direction": direction,
            "compensations": [
                (c.entity, c.operation, c.values, c.unset, c.expected, c.compensates, c.position)
                for c in compensations
            ],
        }
    ).removeprefix("sha256:")[:12]
    conflicts += orphans
    if collections is None:
        in_plan: dict[str, set[str]] = {}
        for address in addresses.values():
            in_plan.setdefault(address.system, set()).add(address.collection)
        collections = {system: sorted(names) for system, names in in_plan.items()}
    deleted = [c.entity for c in compensations if c.operation == "delete"]
    cautions = cascade_cautions(deleted, adapters, collections)
    return RollbackPlan(
        id=plan_id,
        scope=scope,
        policy=policy,
        position=position,
        compensations=tuple(compensations),
        conflicts=tuple(sorted(conflicts, key=lambda c: c.entity)),
        already_rolled_back=tuple(sorted(done)),
        aborted=aborted,
        followups=tuple(followups),
        direction=direction,
        missing_parent=missing_parent,
        cautions=tuple(cautions),
    )


def _order_by_relations(
    compensations: list[Compensation], adapters: dict[str, Adapter]
) -> tuple[list[Compensation], list[Conflict]]:
    """Where adapters know relations: drop (as conflicts) the records whose restored state
    would reference a parent that is gone, then put parents' re-creations before their
    children and children's deletions before their parents, keeping reverse log order
    wherever relations do not decide. New keys are marked where the system assigns them."""
    marked = []
    relations: dict[tuple[str, str], tuple[Relation, ...]] = {}
    for c in compensations:
        address = Address.parse(c.entity)
        where = (address.system, address.collection)
        adapter = adapters[address.system]
        if where not in relations:
            relations[where] = adapter.relations(address.collection)
        new_key = c.operation == "create" and adapter.assigns_keys(address.collection)
        marked.append(replace(c, new_key=True) if new_key else c)
    if not any(relations.values()):
        return marked, []
    references = {c.entity: _references(c, relations) for c in marked}
    orphans = _orphans(marked, references, adapters)
    kept = [c for c in marked if c.entity not in orphans]
    return _topological(kept, references), list(orphans.values())


def _references(
    c: Compensation, relations: dict[tuple[str, str], tuple[Relation, ...]]
) -> tuple[list[tuple[str, str]], list[str]]:
    """The parents the record will reference after the compensation (with the field), and
    the parents it references now and stops referencing (by deletion or by the update)."""
    address = Address.parse(c.entity)
    after: list[tuple[str, str]] = []
    before: list[str] = []
    for relation in relations[(address.system, address.collection)]:
        parent = f"{address.system}/{relation.parent}/"
        if c.operation != "delete" and c.values.get(relation.field) is not None:
            after.append((relation.field, parent + str(c.values[relation.field])))
        changes = c.operation == "delete" or relation.field in (*c.values, *c.unset)
        old = c.expected.get(relation.field, ABSENT)
        if changes and old is not ABSENT and old is not None:
            before.append(parent + str(old))
    return after, before


def _orphans(
    compensations: list[Compensation],
    references: dict[str, tuple[list[tuple[str, str]], list[str]]],
    adapters: dict[str, Adapter],
) -> dict[str, Conflict]:
    """Records whose restored state references a parent that neither exists in its target
    (and survives the plan) nor is re-created by it; found again until none is left, since
    skipping a parent's re-creation orphans its children."""
    by_entity = {c.entity: c for c in compensations}
    wanted = {
        parent
        for after, _ in references.values()
        for _, parent in after
        if parent not in by_entity or by_entity[parent].operation == "update"
    }
    present = {
        name
        for name, record in _read_targets(adapters, map(Address.parse, wanted)).items()
        if record is not None
    }
    orphans: dict[str, Conflict] = {}

    def alive(parent: str) -> bool:
        planned = by_entity.get(parent)
        if planned is None or planned.operation == "update":
            return parent in present  # the plan leaves it where it is
        return planned.operation == "create" and parent not in orphans  # unless skipped

    while True:
        found = False
        for c in compensations:
            if c.entity in orphans:
                continue
            for field_name, parent in references[c.entity][0]:
                if not alive(parent):
                    orphans[c.entity] = Conflict(
                        c.entity,
                        "missing parent",
                        (field_name,),
                        ({"field": field_name, "value": parent, "by": "parent record is gone"},),
                    )
                    found = True
                    break
        if not found:
            return orphans


def _topological(
    compensations: list[Compensation],
    references: dict[str, tuple[list[tuple[str, str]], list[str]]],
) -> list[Compensation]:
    """Parents re-created before children, children deleted before parents; otherwise the
    given (reverse log) order. A cycle of references keeps the given order for its records."""
    position = {c.entity: index for index, c in enumerate(compensations)}
    successors: list[list[int]] = [[] for _ in compensations]
    waiting = [0] * len(compensations)

    def edge(first: int, then: int) -> None:
        successors[first].append(then)
        waiting[then] += 1

    for index, c in enumerate(compensations):
        after, before = references[c.entity]
        for _, parent in after:
            other = position.get(parent)
            if other is not None and compensations[other].operation == "create":
                edge(other, index)
        for parent in before:
            other = position.get(parent)
            if other is not None and compensations[other].operation == "delete":
                edge(index, other)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for then in successors[index]:
            waiting[then] -= 1
            if waiting[then] == 0:
                heapq.heappush(ready, then)
    placed = set(order)
    order += [index for index in range(len(compensations)) if index not in placed]
    return [compensations[index] for index in order]


def _scope_actions(
    ledger: Ledger, scope: Scope, position: int
) -> tuple[dict[UUID, list[tuple[int, int, str]]], dict[UUID, Address], set[str]]:
    """The scope's actions up to a log position, per record: (version, position, fingerprint),
    oldest first; each record's address; every fingerprint in scope."""
    rows = ledger.index.actions_matching(
        batches=scope.batches,
        workflow=scope.workflow,
        after=ledger.cutoff(Point.parse(scope.since)) if scope.since else None,
        system=scope.system,
        collection=scope.collection,
    )
    by_entity: dict[UUID, list[tuple[int, int, str]]] = {}
    addresses: dict[UUID, Address] = {}
    scoped: set[str] = set()
    for entity_id, version, row_position, fingerprint, system, collection, key in rows:
        if row_position <= position:
            by_entity.setdefault(entity_id, []).append((version, row_position, fingerprint))
            addresses[entity_id] = Address(system, collection, key)
            scoped.add(fingerprint)
    return by_entity, addresses, scoped


def _histories(
    ledger: Ledger, entity_ids: list[UUID], position: int
) -> Iterator[tuple[UUID, list[Entity.Action]]]:
    """Each record's actions up to a log position, read a page of records at a time (the event
    store would make one query per record: a 100,000-record rollback spent a third of its
    planning there)."""
    table = cast(Any, ledger.recorder).events_table_name
    cut: dict[UUID, int] = {}  # records with actions after the position: the last version before
    for entity_id, version, *_ in ledger.index.actions_matching(after_position=position):
        cut[entity_id] = min(cut.get(entity_id, version), version - 1)
    for start in range(0, len(entity_ids), HISTORY_PAGE):
        page = entity_ids[start : start + HISTORY_PAGE]
        stored = ledger.index.stored_events_of(table, page)
        for entity_id in page:
            events = stored.get(entity_id, ())
            if entity_id in cut:
                events = [e for e in events if e.originator_version <= cut[entity_id]]
            yield (
                entity_id,
                [cast(Entity.Action, ledger.mapper.to_domain_event(event)) for event in events],
            )


def _held_by_contract(
    address: Address,
    history: Sequence[Entity.Action],
    actions: list[tuple[int, int, str]],
    contract: Contract,
    now: datetime,
) -> FollowUp | None:
    """A follow-up instead of a compensation, when the collection's contract says so."""
    if contract.repair is not None:
        return FollowUp(
            str(address),
            contract.repair,
            "not reversible by a write (declared in the rollback contract)",
            contract.owner,
        )
    if contract.window is not None:
        versions = {version for version, _, _ in actions}
        oldest = min(e.timestamp for e in history if e.originator_version in versions)
        if now - oldest > contract.window:
            return FollowUp(
                str(address),
                "review",
                f"changed {oldest.isoformat()}, outside the rollback window ({contract.window})",
                contract.owner,
            )
    return None


def _read_targets(
    adapters: dict[str, Adapter], addresses: Iterator[Address] | Any
) -> dict[str, Any]:
    """The current target record of every address, one round trip per collection."""
    wanted: dict[tuple[str, str], list[Address]] = {}
    for address in addresses:
        wanted.setdefault((address.system, address.collection), []).append(address)
    images: dict[str, Any] = {}
    for (system, collection), group in wanted.items():
        adapter = adapters.get(system)
        if adapter is None:
            raise InvalidChange(
                f"the rollback touches system {system!r}, which is not configured", field="system"
            )
        records = adapter.read(collection, [a.key for a in group])
        for address in group:
            images[str(address)] = records[address.key]
    return images


def _state(history: Sequence[Entity.Action], upto: int) -> tuple[dict[str, Any], bool]:
    """A record's fields after its first `upto` actions. Before the first action on a record
    that existed before the ledger saw it (an update or delete first), the record existed and
    its touched fields held that action's before-values; before a first `move` (a create the
    system stored under another key) it did not exist."""
    if upto == 0 and history and history[0].operation not in ("create", MOVE):
        return dict(history[0].before), True
    fields: dict[str, Any] = {}
    exists = False
    for event in history[:upto]:
        fields, exists = fold(fields, event.operation, event.before, event.after)
    return fields, exists


def _before_each_touch(
    history: Sequence[Entity.Action], first_touch: dict[str, int]
) -> dict[str, Any]:
    """Each field's value (ABSENT: none) just before the version that first touched it: that
    action's own before-image, which also knows fields of a record the ledger first saw
    partially (an update, then a delete carrying the whole record)."""
    return {
        name: history[version - 1].before.get(name, ABSENT) for name, version in first_touch.items()
    }


@dataclass(frozen=True)
class _History:
    """What a record's history (up to the plan's position) says about reversing the scope."""

    before: dict[str, Any] | None  # the state to return to (None: the record should not exist)
    now: dict[str, Any] | None  # the ledger's projection (None: the record does not exist)
    first_touch: dict[str, int]  # each field the scope touched: the version that first did
    later: list[Entity.Action]  # actions by others since the scope acted on the record
    known: set[str]  # every field the ledger knows the value (or the absence) of
    done: bool  # already reversed by a rollback (or replay) of this scope


def _read_history(
    history: Sequence[Entity.Action],
    actions: list[tuple[int, int, str]],
    scoped: set[str],
    direction: str,
) -> _History:
    """Undo returns each field the scope touched to its value before the scope first touched
    it; redo to the state the scope's latest action left. The scope's own rollbacks and
    replays are not someone else's later actions."""
    versions = {version for version, _, _ in actions}
    earliest, latest = min(versions), max(versions)
    mine = "compensates" if direction == "undo" else "replays"
    later = [
        e
        for e in history[earliest if direction == "undo" else latest :]
        if e.originator_version not in versions and not set((*e.compensates, *e.replays)) & scoped
    ]
    # Done when, after the scope's latest action, a rollback (or replay) of this scope covered
    # every one of its actions here and no replay (or rollback) undid that since; edits by
    # others afterwards do not make it undone.
    theirs = "replays" if direction == "undo" else "compensates"
    covered: set[str] = set()
    for event in history[latest:]:
        covered |= set(getattr(event, mine))
        covered -= set(getattr(event, theirs))
    done = {fingerprint for _, _, fingerprint in actions} <= covered
    first_touch: dict[str, int] = {}
    for event in history:
        if event.originator_version in versions:
            for name in (*event.before, *event.after):
                first_touch.setdefault(name, event.originator_version)
    if direction == "undo":
        before, existed = _state(history, earliest - 1)
        if existed:
            for name, value in _before_each_touch(history, first_touch).items():
                if value is ABSENT:
                    before.pop(name, None)
                else:
                    before[name] = value
    else:
        before, existed = _state(history, latest)
        first_touch = dict.fromkeys(first_touch, latest)
    now, exists = _state(history, len(history))
    return _History(
        before if existed else None,
        now if exists else None,
        first_touch,
        later,
        _known_fields(history),
        done,
    )


def _later_changes(
    record: _History, history: Sequence[Entity.Action], whole_record: bool
) -> tuple[set[str], list[dict[str, Any]]]:
    """The fields others changed since the scope acted, with who did it: any field (and the
    record's existence) when the policy is record-level, else the scope's own fields after the
    scope first touched each."""
    conflicted: set[str] = set()
    competing: list[dict[str, Any]] = []
    touched = set(record.first_touch)
    for event in record.later:
        if event.operation == TRACK:
            # Seeing the record whole: only a value it contradicts would be a change (tracking
            # adopts none; fields it shows for the first time are learned).
            names = {
                n for n in event.before if not same(event.before[n], event.after.get(n, ABSENT))
            }
            if not names:
                continue
        else:
            names = {*event.before, *event.after} - _learned(history, event)
        if event.operation not in ("update", TRACK):
            hit = (names if whole_record else touched) | {"(record)"}
        elif whole_record:
            hit = names
        else:
            hit = {
                n
                for n in names
                if n in record.first_touch and event.originator_version > record.first_touch[n]
            }
        conflicted |= hit
        competing += [
            {
                "field": name,
                "value": event.after.get(name, ABSENT),
                "by": event.actor or event.batch,
                "batch": event.batch,
                "version": event.originator_version,
            }
            for name in sorted(hit)
        ]
    return conflicted, competing


def _plan_entity(
    address: Address,
    history: Sequence[Entity.Action],
    actions: list[tuple[int, int, str]],
    scoped: set[str],
    image: Any,
    policy: str,
    protected: tuple[str, ...] = (),
    direction: str = "undo",
) -> Any:
    """The compensation and/or conflict for one record (or "already" if it was done before).

    Under ``skip`` and ``abort`` a conflict is record-level: any later action by others since
    the scope acted on the record, or drift in any field the ledger knows; under ``fields``
    and ``force`` only changes to the scope's own fields, after the scope first touched each,
    compete with it."""
    record = _read_history(history, actions, scoped, direction)
    if record.done:
        return "already"
    touched = set(record.first_touch)
    whole_record = policy in ("skip", "abort")
    conflicted, competing = _later_changes(record, history, whole_record)
    reasons = ["later action"] if conflicted else []
    # The target may have drifted too: in any field the ledger knows (record-level), or in the
    # scope's own fields.
    known = record.known if whole_record else touched
    differing = _drift(record.now, image, known) - conflicted
    if differing:
        conflicted |= differing
        reasons.append("drift in the target")
        competing += [
            {"field": name, "value": (image or {}).get(name, ABSENT), "by": "outside the ledger"}
            for name in sorted(differing)
        ]
    entity = str(address)
    conflict = (
        Conflict(entity, " and ".join(reasons), tuple(sorted(conflicted)), tuple(competing))
        if conflicted
        else None
    )
    restorable = touched - set(protected)
    if conflicted and policy in ("skip", "abort"):
        return None, conflict
    if conflicted and policy == "fields":
        if "(record)" in conflicted:
            return None, conflict
        restorable -= conflicted
    current = image if policy == "force" and conflicted else record.now
    # Under skip, the record must still hold every field as planning saw it when applied.
    guard = _whole(image, known) if whole_record and image is not None else {}
    compensation = _compensation(entity, record.before, current, restorable, actions, guard)
    return compensation, conflict


def _learned(history: Sequence[Entity.Action], event: Entity.Action) -> set[str]:
    """Fields an outside edit adopted when a run first read them (the ledger had never seen
    them, so it cannot tell when they got their values): learning, not a change since."""
    if event.batch != OBSERVED_BATCH or event.operation != "update":
        return set()
    return set(event.after) - _known_fields(history[: event.originator_version - 1])


def _known_fields(history: Sequence[Entity.Action]) -> set[str]:
    """Every field any action on the record named: the fields whose value the ledger knows."""
    return {name for event in history for name in (*event.before, *event.after)}


def _whole(image: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """The record as read, with the fields the ledger knows absent marked so."""
    return {name: image.get(name, ABSENT) for name in sorted(set(image) | known)}


def _drift(
    ledger_now: dict[str, Any] | None, target: dict[str, Any] | None, fields: set[str]
) -> set[str]:
    if (ledger_now is None) != (target is None):
        return {"(record)"}
    if ledger_now is None or target is None:
        return set()
    return {
        name for name in fields if not same(ledger_now.get(name, ABSENT), target.get(name, ABSENT))
    }


def _compensation(
    entity: str,
    before: dict[str, Any] | None,
    current: dict[str, Any] | None,
    fields: set[str],
    actions: list[tuple[int, int, str]],
    guard: dict[str, Any],
) -> Compensation | None:
    """The net write; ``guard`` adds fields the target must still hold, unwritten ones too."""
    compensates = tuple(fingerprint for _, _, fingerprint in reversed(actions))
    position = max(row_position for _, row_position, _ in actions)
    if before is None and current is None:
        return None
    if before is None:
        return Compensation(
            entity, "delete", {}, (), {**guard, **cast(dict, current)}, compensates, position
        )
    if current is None:
        return Compensation(entity, "create", dict(before), (), {}, compensates, position)
    values = {
        f: before[f]
        for f in sorted(fields)
        if f in before and not same(before[f], current.get(f, ABSENT))
    }
    unset = tuple(sorted(f for f in fields if f not in before and f in current))
    if not values and not unset:
        return None
    expected = {**guard, **{f: current.get(f, ABSENT) for f in [*values, *unset]}}
    return Compensation(entity, "update", values, unset, expected, compensates, position)


# Checking a plan against history -----------------------------------------------------------


def check_against_history(
    ledger: Ledger,
    rollback: RollbackPlan,
    contracts: dict[tuple[str, str], Contract] | None = None,
) -> None:
    """Refuse a plan (nothing applied) unless every compensation reverses actions of the plan's
    scope on its record, with exactly the values the ledger's history gives at the plan's
    position, within what the policy allows. A plan is data that may have been edited since
    it was made (its seal only proves that the file is the one saved): only the ledger's own
    history is trusted. Target-side facts the history cannot know (drift read while planning,
    what `force` expects the target to hold) can only make a compensation smaller or its
    compare-and-set stricter, never write values history does not give."""
    for name, value, allowed in (
        ("policy", rollback.policy, POLICIES),
        ("direction", rollback.direction, ("undo", "redo")),
        ("missing_parent", rollback.missing_parent, MISSING_PARENT),
    ):
        if value not in allowed:
            raise InvalidChange(
                f"{rollback.verb} plan {rollback.id}: {name} {value!r} is not one of "
                f"{', '.join(allowed)}; plan again",
                field=name,
            )
    by_entity, addresses, scoped = _scope_actions(ledger, rollback.scope, rollback.position)
    ids = {str(address): entity_id for entity_id, address in addresses.items()}
    planned: dict[str, Compensation] = {}
    for compensation in rollback.compensations:
        problem = None
        if compensation.entity in planned:
            problem = "it is planned twice"
        elif compensation.entity not in ids:
            problem = f"it has no action in the scope ({rollback.scope.describe()})"
        if problem:
            raise _refused(rollback, compensation.entity, problem)
        planned[compensation.entity] = compensation
    wanted = [ids[entity] for entity in planned]
    for entity_id, history in _histories(ledger, wanted, rollback.position):
        address = addresses[entity_id]
        contract = (contracts or {}).get((address.system, address.collection), Contract())
        compensation = planned[str(address)]
        problem = _disagreement(
            compensation, history, by_entity[entity_id], scoped, rollback, contract
        )
        if problem:
            raise _refused(rollback, compensation.entity, problem)


def _refused(rollback: RollbackPlan, entity: str, problem: str) -> InvalidChange:
    return InvalidChange(
        f"{rollback.verb} plan {rollback.id} does not match the ledger's history: {entity}: "
        f"{problem}; nothing was applied. Plan again (`ledger {rollback.verb} plan`)",
        field="plan",
    )


def _disagreement(
    c: Compensation,
    history: Sequence[Entity.Action],
    actions: list[tuple[int, int, str]],
    scoped: set[str],
    rollback: RollbackPlan,
    contract: Contract,
) -> str | None:
    """Why a compensation is not one the history allows (None: it is)."""
    record = _read_history(history, actions, scoped, rollback.direction)
    policy = rollback.policy
    if c.compensates != tuple(fingerprint for _, _, fingerprint in reversed(actions)):
        return "it names other actions than the scope's actions on this record"
    if c.position != max(row_position for _, row_position, _ in actions):
        return "its position is not that of the scope's newest action on it"
    if record.done:
        return f"history shows the {rollback.verb} of it done already"
    if contract.repair is not None:
        return f"its collection's rollback contract makes it a manual repair ({contract.repair})"
    restorable = set(record.first_touch) - set(contract.protected)
    if policy != "force":
        conflicted, _ = _later_changes(record, history, policy in ("skip", "abort"))
        if conflicted and (policy != "fields" or "(record)" in conflicted):
            return f"others changed it since ({', '.join(sorted(conflicted))}): a conflict"
        restorable -= conflicted
    before, now = record.before, record.now
    if c.operation == "delete":
        if before is not None:
            return "history says it existed before, so it is restored, not deleted"
        if c.values or c.unset:
            return "a delete writes no fields"
    elif c.operation == "create":
        if before is None:
            return "history says it did not exist before, so it is not re-created"
        if c.unset or c.expected:
            return "a re-create expects the record to be absent, and unsets nothing"
        for name in sorted(set(before) | set(c.values)):
            if not same(c.values.get(name, ABSENT), before.get(name, ABSENT)):
                return _differs(name, c.values.get(name, ABSENT), before.get(name, ABSENT))
    elif c.operation == "update":
        if before is None:
            return "history says it did not exist before, so it is deleted, not restored"
        for name in sorted(c.values):
            if name not in restorable:
                return f"field {name!r} is not one the {rollback.verb} may restore"
            if not same(c.values[name], before.get(name, ABSENT)):
                return _differs(name, c.values[name], before.get(name, ABSENT))
        for name in c.unset:
            if name not in restorable or name in before:
                return f"field {name!r} is not one the {rollback.verb} removes"
    else:
        return f"operation {c.operation!r} is not update, create or delete"
    if c.operation == "create":
        return None
    # Compare-and-set: every field written (every known field, for skip and for a delete) is
    # expected, and, unless forced, expected to hold what the ledger says it holds.
    needed = {*c.values, *c.unset}
    if policy in ("skip", "abort"):
        needed |= record.known
    elif policy == "fields" and c.operation == "delete":
        needed |= set(now or ())
    missing = sorted(needed - set(c.expected))
    if missing:
        return f"field {missing[0]!r} is written without checking what the target holds"
    if policy == "force":
        return None
    if now is None:
        return "history says it does not exist now"
    for name in sorted(set(c.expected) & record.known):
        if not same(c.expected[name], now.get(name, ABSENT)):
            return (
                f"field {name!r}: the plan expects the target to hold "
                f"{_show(c.expected[name])}, the ledger says {_show(now.get(name, ABSENT))}"
            )
    return None


def _differs(name: str, planned: Any, recorded: Any) -> str:
    return f"field {name!r}: the plan writes {_show(planned)}, history says {_show(recorded)}"


# Applying ---------------------------------------------------------------------------------


def apply(
    ledger: Ledger,
    rollback: RollbackPlan,
    adapters: dict[str, Adapter],
    *,
    actor: str | None = None,
    on_progress: Any = None,
    on_failure: str = "continue",
    contracts: dict[tuple[str, str], Contract] | None = None,
) -> RollbackReport:
    """Apply a plan's compensations newest first, each exactly once, then verify.

    The plan is first checked against the ledger's history (`check_against_history`, with
    the rollback ``contracts``): a plan that disagrees is refused and nothing is applied. A
    compensation the target refuses (``failed``) is listed as needing attention; the rest go
    on (``on_failure="continue"``) or the rollback stops after the chunk holding it
    (``"stop"``), leaving the others ``not attempted``. The rollback's batch closes once
    nothing is left to do; until then applying the plan again resumes it, and afterwards
    applying it again changes nothing and says so."""
    if on_failure not in ON_FAILURE:
        raise InvalidChange(
            f"failure policy {on_failure!r} is not one of {', '.join(ON_FAILURE)}",
            field="on_failure",
        )
    check_against_history(ledger, rollback, contracts)
    report = RollbackReport(rollback)
    compensated = {c.entity for c in rollback.compensations}
    for conflict in rollback.conflicts:
        if conflict.entity not in compensated:
            report.outcomes.append(
                {
                    "entity": conflict.entity,
                    "outcome": "skipped",
                    "reason": f"conflict: {conflict.reason} on {', '.join(conflict.fields)}",
                }
            )
    if rollback.aborted:
        return report
    fingerprints = {c.entity: _fingerprint(rollback, c.entity) for c in rollback.compensations}
    done = ledger.index.find_fingerprints(list(fingerprints.values()))
    if _closed(ledger, rollback.batch):
        report.finished = True
        report.outcomes += [
            _finished(c, fingerprints[c.entity] in done) for c in rollback.compensations
        ]
        return report
    moved = _moved_in_ledger(ledger, rollback, set(done))
    run = Run(ledger, rollback.batch, workflow=rollback.verb, actor=actor, trigger=rollback.verb)
    follower = _ParentFollower(ledger, adapters)
    applied: list[Compensation] = []
    stopped = False
    for target, chunk in _chunks(rollback, adapters, moved, report):
        if stopped:
            report.outcomes.extend(
                {
                    "entity": compensation.entity,
                    "outcome": "not attempted",
                    "reason": "stopped after a failure (on-failure: stop); apply again to resume",
                }
                for compensation in chunk
            )
            continue
        chunk = follower.follow(target, chunk)
        outcomes = run.apply(
            target,
            [_change(rollback, c, fingerprints[c.entity]) for c in chunk],
            chunk_size=APPLY_CHUNK,
            on_progress=on_progress,
        )
        for compensation, outcome in zip(chunk, outcomes, strict=True):
            described = _describe(compensation, outcome, follower.followed.get(compensation.entity))
            report.outcomes.append(described)
            if "as" in described:
                follower.moves.landed(compensation.entity, described["as"])
            if outcome.status in ("applied", "already_applied"):
                applied.append(compensation)
        stopped = on_failure == "stop" and any(o.status == "failed" for o in outcomes)
    unfinished = any(o["outcome"] in ("failed", "not attempted") for o in report.outcomes)
    if applied and not unfinished:
        ledger.close_batch(rollback.batch)  # resumed or not: it holds every compensation
    report.mismatches = verify(applied, adapters, report)
    return report


def _fingerprint(rollback: RollbackPlan, entity: str) -> str:
    return f"{rollback.verb}:{rollback.id}:{entity}"


def _change(rollback: RollbackPlan, c: Compensation, fingerprint: str) -> Change:
    return Change(
        Address.parse(c.entity),
        c.operation,
        values=c.values,
        unset=c.unset,
        expected=c.expected,
        compensates=c.compensates if rollback.direction == "undo" else (),
        replays=c.compensates if rollback.direction == "redo" else (),
        fingerprint=fingerprint,
    )


def _closed(ledger: Ledger, batch: str) -> bool:
    try:
        return ledger.batch_view(batch).status == "closed"
    except NotFound:
        return False


def _finished(c: Compensation, landed: bool) -> dict[str, Any]:
    """A compensation of a rollback that was applied to the end before."""
    if landed:
        kind = {"update": "restored", "create": "re-created", "delete": "deleted"}
        return {"entity": c.entity, "outcome": kind[c.operation], "note": ALREADY}
    return {
        "entity": c.entity,
        "outcome": "skipped",
        "reason": "left as it was when this rollback was applied (it had changed since the "
        "plan was made); plan again to see it",
    }


def _chunks(
    rollback: RollbackPlan,
    adapters: dict[str, Adapter],
    moved: set[str],
    report: RollbackReport,
) -> Iterator[tuple[Target, list[Compensation]]]:
    """The compensations to apply, in plan order, in chunks of one collection; a record that
    references a parent re-created under a new key goes in a later chunk than the parent, so
    the parent's new key is known when the record is written."""
    target: Target | None = None
    chunk: list[Compensation] = []
    new_keys: set[str] = set()
    for c in rollback.compensations:
        if c.entity in moved:
            report.outcomes.append(
                {
                    "entity": c.entity,
                    "outcome": "skipped",
                    "reason": "a newer action in the ledger since the plan was made",
                    "refused": True,
                }
            )
            continue
        address = Address.parse(c.entity)
        adapter = adapters.get(address.system)
        if adapter is None:
            raise InvalidChange(f"system {address.system!r} is not configured", field="system")
        here = Target(adapter, address.collection)
        waits = new_keys and any(
            f"{address.system}/{relation.parent}/"
            f"{c.values.get(relation.field, c.expected.get(relation.field))}" in new_keys
            for relation in adapter.relations(address.collection)
        )
        if chunk and (here != target or len(chunk) == APPLY_CHUNK or waits):
            yield cast(Target, target), chunk
            chunk, new_keys = [], set()
        target = here
        chunk.append(c)
        if c.new_key:
            new_keys.add(c.entity)
    if chunk:
        yield cast(Target, target), chunk


class _ParentFollower:
    """Rewrites the parent fields of re-created and restored records whose parent lives under
    a new key now (see `ledger.relations`)."""

    def __init__(self, ledger: Ledger, adapters: dict[str, Adapter]):
        self.adapters = adapters
        self.moves = Moves(ledger)
        self.followed: dict[str, dict[str, Any]] = {}

    def follow(self, target: Target, chunk: list[Compensation]) -> list[Compensation]:
        adapter, collection = target.adapter, target.collection
        relations = adapter.relations(collection)
        assigns = {r.parent: adapter.assigns_keys(r.parent) for r in relations}
        if not any(assigns.values()):
            return chunk
        # A restore that does not write a parent field leaves it as the target holds it.
        unknown = [
            Address.parse(c.entity).key
            for c in chunk
            if c.operation == "update"
            and any(r.field not in c.values and r.field not in c.expected for r in relations)
        ]
        read = adapter.read(collection, unknown) if unknown else {}
        result = []
        for c in chunk:
            if c.operation == "delete":
                result.append(c)
                continue
            address = Address.parse(c.entity)
            current = {**(read.get(address.key) or {}), **c.expected}
            followed = follow_parents(address, relations, c.values, current, assigns, self.moves)
            if not followed:
                result.append(c)
                continue
            self.followed[c.entity] = followed
            expected = dict(c.expected)
            if c.operation == "update":
                expected.update({f: current.get(f, ABSENT) for f in followed if f not in c.values})
            result.append(replace(c, values={**c.values, **followed}, expected=expected))
        return result


def _moved_in_ledger(ledger: Ledger, rollback: RollbackPlan, done: set[str]) -> set[str]:
    """Records with an action after the plan's position (other than this rollback's own),
    among those whose compensation has not landed yet (a landed one is answered as done)."""
    rows = ledger.index.actions_matching(after_position=rollback.position)
    mine = {_fingerprint(rollback, c.entity) for c in rollback.compensations}
    mine |= {f"{fingerprint}:moved" for fingerprint in mine}  # re-created under a new key
    waiting = {
        c.entity for c in rollback.compensations if _fingerprint(rollback, c.entity) not in done
    }
    return {
        f"{system}/{collection}/{key}"
        for _, _, _, fingerprint, system, collection, key in rows
        if fingerprint not in mine and f"{system}/{collection}/{key}" in waiting
    }


def _describe(
    compensation: Compensation, outcome: Outcome, followed: dict[str, Any] | None
) -> dict[str, Any]:
    result: dict[str, Any] = {"entity": compensation.entity}
    if outcome.status in ("applied", "already_applied"):
        kind = {"update": "restored", "create": "re-created", "delete": "deleted"}
        result["outcome"] = kind[compensation.operation]
        if outcome.moved_to is not None:
            result["as"] = outcome.moved_to  # the key the system chose
        if followed:
            result["parents"] = encode_value(followed)  # fields pointed at a parent's new key
        if outcome.status == "already_applied":
            result["note"] = ALREADY
    elif outcome.status == "stale":
        result.update(
            outcome="skipped",
            reason="changed in the target since the plan was made",
            field=outcome.field,
            expected=encode_value(outcome.expected),
            actual=encode_value(outcome.actual),
            refused=True,
        )
    else:
        result.update(outcome="failed", error=outcome.error)
    return result


def verify(
    applied: Sequence[Compensation], adapters: dict[str, Adapter], report: RollbackReport
) -> list[dict[str, Any]]:
    """Re-read every record the rollback wrote and compare it with the planned state exactly:
    each written value (and each field removed); each other field the compensation expected
    (under `skip`, the whole record), still as it was; a deleted record gone, a re-created one
    there (fields the system adds to a created record, like its own timestamps, are not the
    plan's); and every parent a written record references, present."""
    where = {o["entity"]: o.get("as", o["entity"]) for o in report.outcomes}
    images = _read_targets(adapters, [Address.parse(where[c.entity]) for c in applied])
    mismatches = []
    parents: dict[str, list[tuple[str, str]]] = {}  # parent address -> (record, field)
    relations: dict[tuple[str, str], tuple[Relation, ...]] = {}
    for compensation in applied:
        record = images[where[compensation.entity]]
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
            address = Address.parse(where[compensation.entity])
            collection = (address.system, address.collection)
            if collection not in relations:
                relations[collection] = adapters[address.system].relations(address.collection)
            for relation in relations[collection]:
                value = record.get(relation.field)
                if value is not None and not isinstance(value, (dict, list)):
                    parent = f"{address.system}/{relation.parent}/{value}"
                    parents.setdefault(parent, []).append((compensation.entity, relation.field))
        if differing:
            mismatches.append(
                {
                    "entity": compensation.entity,
                    "fields": sorted(differing),
                    "holds": encode_value(differing),
                }
            )
    present = _read_targets(adapters, map(Address.parse, parents))
    for parent, referencing in parents.items():
        if present[parent] is None:
            mismatches += [
                {"entity": entity, "fields": [name], "missing_parent": parent}
                for entity, name in referencing
            ]
    return mismatches
