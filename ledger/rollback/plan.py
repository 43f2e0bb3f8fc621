"""`RollbackPlan`: what a rollback will do, as data to print, save sealed, check and apply.

The plan is computed at one log position (`ledger.rollback.planning`); applying re-checks every
record against the ledger's history (`ledger.rollback.checks`) and the target (compare-and-set).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, BinaryIO

from ledger.encoding import encode_value
from ledger.errors import InvalidChange
from ledger.plan_seal import digest, seal, unseal
from ledger.relations import Caution
from ledger.rollback.model import (
    Compensation,
    Conflict,
    Direction,
    FollowUp,
    MissingParent,
    Policy,
    RollbackScope,
)
from ledger.rollback.runbook import render_runbook
from ledger.spill import Spilled
from ledger.transcoder import OrjsonTranscoder

PLAN_FORMAT = "changeledger/rollback-plan/3"
_EARLIER_FORMATS = ("changeledger/rollback-plan/2",)
_CODEC = OrjsonTranscoder()


def compensation_json(c: Compensation) -> dict[str, Any]:
    """One compensation as the plan's JSON holds it (values in the edge encoding)."""
    return {
        **asdict(c),
        "kind": c.kind,
        "values": encode_value(c.values),
        "expected": encode_value(c.expected),
    }


def encode_compensation(c: Compensation) -> bytes:
    """One compensation as one line of a saved plan (typed values kept, as events keep them)."""
    return _CODEC.encode(
        {
            "entity": c.entity,
            "operation": c.operation,
            "values": c.values,
            "unset": list(c.unset),
            "expected": c.expected,
            "compensates": list(c.compensates),
            "position": c.position,
            "new_key": c.new_key,
        }
    )


def decode_compensation(line: bytes) -> Compensation:
    c = _CODEC.decode(line)
    return Compensation(
        entity=c["entity"],
        operation=c["operation"],
        values=c["values"],
        unset=tuple(c["unset"]),
        expected=c["expected"],
        compensates=tuple(c["compensates"]),
        position=c["position"],
        new_key=c["new_key"],
    )


def spilled_compensations(items: Iterable[Compensation] = ()) -> Spilled[Compensation]:
    """Compensations kept on disk a page at a time (`ledger.spill`)."""
    return Spilled.of(items, encode_compensation, decode_compensation)


def compensations_digest(compensations: Sequence[Compensation]) -> str:
    """The SHA-256 of the compensations' lines, as a saved plan holds them."""
    if isinstance(compensations, Spilled) and compensations.encode is encode_compensation:
        return compensations.digest
    lines = hashlib.sha256()
    for c in compensations:
        lines.update(encode_compensation(c) + b"\n")
    return "sha256:" + lines.hexdigest()


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback will do, computed at one log position; apply re-checks every record.

    Its compensations may be more than memory holds: `plan_rollback` keeps them on disk a
    page at a time (`ledger.spill`), and a saved plan is written and read a line per
    compensation (`write`, `load`)."""

    id: str
    scope: RollbackScope
    policy: Policy
    position: int
    compensations: Sequence[Compensation]
    conflicts: tuple[Conflict, ...]
    already_rolled_back: tuple[str, ...] = ()
    aborted: bool = False
    followups: tuple[FollowUp, ...] = ()
    direction: Direction = "undo"  # "undo" (a rollback) or "redo" (a replay)
    missing_parent: MissingParent = "skip"
    cautions: tuple[Caution, ...] = ()  # to check before applying (a parent's deletion)
    planner: str | None = None  # who planned it: a two-person lane's approver must be another
    workflows: tuple[str, ...] = ()  # the workflows whose actions the scope holds (their lanes)

    @property
    def verb(self) -> str:
        return "rollback" if self.direction == "undo" else "replay"

    @property
    def batch(self) -> str:
        return f"{self.verb}-{self.id}"

    @cached_property
    def seal(self) -> str:
        """The digest of the plan's exact content: what an approval is bound to (the seal a
        saved plan carries, `write`). Its compensations count by their lines' digest.
        Computed once: the plan is frozen."""
        return digest(self._header)

    @cached_property
    def _header(self) -> dict[str, Any]:
        """Everything but the compensations themselves, which count by number and digest."""
        return {
            "id": self.id,
            "scope": asdict(self.scope),
            "policy": self.policy,
            "position": self.position,
            "compensations": {
                "count": len(self.compensations),
                "digest": compensations_digest(self.compensations),
            },
            "conflicts": [asdict(c) for c in self.conflicts],
            "already_rolled_back": list(self.already_rolled_back),
            "aborted": self.aborted,
            "followups": [asdict(f) for f in self.followups],
            "direction": self.direction,
            "missing_parent": self.missing_parent,
            "cautions": [asdict(c) for c in self.cautions],
            "planner": self.planner,
            "workflows": list(self.workflows),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scope": asdict(self.scope),
            "policy": self.policy,
            "position": self.position,
            "aborted": self.aborted,
            "compensations": [compensation_json(c) for c in self.compensations],
            "conflicts": [encode_value(asdict(c)) for c in self.conflicts],
            "already_rolled_back": list(self.already_rolled_back),
            "followups": [asdict(f) for f in self.followups],
            "direction": self.direction,
            "missing_parent": self.missing_parent,
            "cautions": [asdict(c) for c in self.cautions],
            "planner": self.planner,
            "workflows": list(self.workflows),
            "seal": self.seal,
        }

    def write(self, file: BinaryIO) -> None:
        """Save the plan, sealed, to apply later with `load`: a header line (everything but
        the compensations, with their number and digest) then one line per compensation,
        written as they are read (a plan larger than memory saves)."""
        file.write(seal(PLAN_FORMAT, self._header) + b"\n")
        lines = (
            self.compensations.lines()
            if isinstance(self.compensations, Spilled)
            and self.compensations.encode is encode_compensation
            else map(encode_compensation, self.compensations)
        )
        for line in lines:
            file.write(line + b"\n")

    def dumps(self) -> bytes:
        """The saved plan as bytes (`write`)."""
        buffer = io.BytesIO()
        self.write(buffer)
        return buffer.getvalue()

    @classmethod
    def loads(cls, data: bytes) -> RollbackPlan:
        """A saved plan (`load`) from its bytes."""
        return cls.load(io.BytesIO(data))

    @classmethod
    def load(cls, file: BinaryIO) -> RollbackPlan:
        """A saved plan, read a line at a time; refused if it is not one, or if it was
        altered after it was saved (its header's seal, then its compensations' number and
        digest, must match)."""
        made_by = "ledger rollback plan --out"
        first = file.readline().rstrip(b"\n")
        raw = unseal(PLAN_FORMAT, first, made_by, earlier=_EARLIER_FORMATS)
        compensations = spilled_compensations()
        for line in file:
            compensations.append_line(line.rstrip(b"\n"))
        try:
            counted = raw["compensations"]
            if (len(compensations), compensations.digest) != (counted["count"], counted["digest"]):
                raise InvalidChange(
                    "the plan was altered after it was saved (its compensations do not match "
                    f"its seal); plan again with `{made_by}`",
                    field="plan",
                )
            return cls(
                id=raw["id"],
                scope=RollbackScope(**{**raw["scope"], "batches": tuple(raw["scope"]["batches"])}),
                policy=raw["policy"],
                position=raw["position"],
                compensations=compensations,
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
                planner=raw["planner"],
                workflows=tuple(raw["workflows"]),
            )
        except (KeyError, TypeError) as error:  # sealed, but by another version of the ledger
            raise InvalidChange(
                f"the saved plan does not have this version's shape ({error}); plan again",
                field="plan",
            ) from None

    def runbook(self) -> str:
        """The plan as a human-readable runbook (markdown): `render_runbook`."""
        return render_runbook(self)
