"""What applying a rollback did: one typed result per record, the verification, the counts.

`to_json()` is the CLI's ``--json`` output; `RollbackReport.outcomes` and `.mismatches` give the
same JSON view as lists (the CLI's table and older callers read them as mappings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ledger.encoding import encode_value
from ledger.rollback.plan import RollbackPlan
from ledger.spill import Spilled
from ledger.transcoder import OrjsonTranscoder

Result = Literal["restored", "re-created", "deleted", "skipped", "failed", "not attempted"]
ATTENTION: tuple[Result, ...] = ("skipped", "failed", "not attempted")


@dataclass(frozen=True)
class StaleValue:
    """The target held another value than the plan expected: the write was refused."""

    field: str | None
    expected: Any
    actual: Any


@dataclass(frozen=True)
class CompensationResult:
    """What happened to one record's compensation (or to a record left for review)."""

    entity: str
    outcome: Result
    reason: str | None = None  # why it was skipped or not attempted
    moved_to: str | None = None  # a re-create the system stored under a key it chose
    parents: dict[str, Any] | None = None  # parent fields pointed at a parent's new key
    note: str | None = None  # applied by an earlier run of this rollback
    stale: StaleValue | None = None
    error: str | None = None  # the target's refusal, when it failed
    refused: bool = False  # a write this run did not make because the record had moved

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {"entity": self.entity, "outcome": self.outcome}
        if self.reason is not None:
            result["reason"] = self.reason
        if self.moved_to is not None:
            result["as"] = self.moved_to
        if self.parents:
            result["parents"] = encode_value(self.parents)
        if self.note is not None:
            result["note"] = self.note
        if self.stale is not None:
            result["field"] = self.stale.field
            result["expected"] = encode_value(self.stale.expected)
            result["actual"] = encode_value(self.stale.actual)
        if self.outcome == "failed":
            result["error"] = self.error
        if self.refused:
            result["refused"] = True
        return result


@dataclass(frozen=True)
class Mismatch:
    """A record that, read back, does not hold what the rollback wrote (or lost its parent)."""

    entity: str
    fields: tuple[str, ...]
    holds: dict[str, Any] | None = None  # the differing fields as the target holds them
    missing_parent: str | None = None  # the parent a written record references, gone

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {"entity": self.entity, "fields": list(self.fields)}
        if self.holds is not None:
            result["holds"] = encode_value(self.holds)
        if self.missing_parent is not None:
            result["missing_parent"] = self.missing_parent
        return result


_CODEC = OrjsonTranscoder()


def encode_result(r: CompensationResult) -> bytes:
    stale = None if r.stale is None else [r.stale.field, r.stale.expected, r.stale.actual]
    return _CODEC.encode(
        [r.entity, r.outcome, r.reason, r.moved_to, r.parents, r.note, stale, r.error, r.refused]
    )


def decode_result(line: bytes) -> CompensationResult:
    entity, outcome, reason, moved_to, parents, note, stale, error, refused = _CODEC.decode(line)
    return CompensationResult(
        entity,
        outcome,
        reason,
        moved_to,
        parents,
        note,
        None if stale is None else StaleValue(*stale),
        error,
        refused,
    )


def spilled_results() -> Spilled[CompensationResult]:
    """Results kept on disk a page at a time (`ledger.spill`): a rollback of millions of
    records reports on each without holding them all."""
    return Spilled(encode_result, decode_result)


@dataclass
class RollbackReport:
    """One result per record — restored, re-created, deleted, skipped, failed (or not
    attempted, after a stop on failure) — with counts."""

    plan: RollbackPlan
    results: Spilled[CompensationResult] = field(default_factory=spilled_results)
    verification: list[Mismatch] = field(default_factory=list)
    finished: bool = False  # the rollback had been applied to the end before: nothing done

    @property
    def outcomes(self) -> list[dict[str, Any]]:
        """The results as JSON, in order."""
        return [result.to_json() for result in self.results]

    @property
    def mismatches(self) -> list[dict[str, Any]]:
        """The verification's mismatches as JSON (empty: verified)."""
        return [mismatch.to_json() for mismatch in self.verification]

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results:
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
        return counts

    @property
    def needs_attention(self) -> list[CompensationResult]:
        """Records a person must look at: skipped (a conflict), failed, or not attempted."""
        return [r for r in self.results if r.outcome in ATTENTION]

    @property
    def refused(self) -> list[CompensationResult]:
        """Writes this run did not make: refused as stale, failed, or not attempted."""
        return [r for r in self.results if r.refused or r.outcome in ("failed", "not attempted")]

    def to_json(self) -> dict[str, Any]:
        return {
            self.plan.verb: self.plan.id,
            "batch": self.plan.batch,
            "counts": self.counts,
            "needs_attention": [r.entity for r in self.needs_attention],
            "outcomes": self.outcomes,
            "already_applied": self.finished,
            "verification": {"mismatches": self.mismatches, "clean": not self.mismatches},
        }
