"""Reports: a comparison summed up (counts per kind and field, a few samples), whatever its size."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ledger.reconcile.compare import KINDS, Comparison, Drift

SAMPLES = 20


@dataclass(frozen=True)
class DriftReport:
    """Counts of drift per kind and per field, and the first few drifted records."""

    system: str
    collection: str
    at: str | None
    ledger_records: int
    target_records: int
    counts: dict[str, int]
    field_counts: dict[str, int]
    samples: tuple[Drift, ...]

    @classmethod
    def of(cls, comparison: Comparison, samples: int = SAMPLES) -> DriftReport:
        """Run a comparison to its end, keeping only counts and the first ``samples`` drifts."""
        tally = Tally(samples)
        for drift in comparison:
            tally.add(drift)
        return tally.report(comparison)

    @property
    def drifted(self) -> int:
        return sum(self.counts.values())

    @property
    def clean(self) -> bool:
        return self.drifted == 0

    @property
    def records(self) -> int:
        """The records compared: every record either side holds (the target's, and those only
        the ledger holds), what a drift share is a share of."""
        return self.target_records + self.counts.get("missing_in_target", 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "collection": self.collection,
            "at": self.at,
            "clean": self.clean,
            "ledger_records": self.ledger_records,
            "target_records": self.target_records,
            "drifted": self.drifted,
            "records": self.records,
            "counts": self.counts,
            "field_counts": self.field_counts,
            "samples": [drift.to_json() for drift in self.samples],
            "samples_truncated": self.drifted > len(self.samples),
        }


@dataclass
class Tally:
    """A report built one drift at a time, so that a planner can count and decide in one pass."""

    samples: int
    counts: Counter[str] = field(default_factory=Counter)
    fields: Counter[str] = field(default_factory=Counter)
    kept: list[Drift] = field(default_factory=list)

    def add(self, drift: Drift) -> None:
        self.counts[drift.kind] += 1
        if drift.kind == "fields":
            self.fields.update(drift.fields.keys())
        if len(self.kept) < self.samples:
            self.kept.append(drift)

    def report(self, comparison: Comparison) -> DriftReport:
        """The report, once ``comparison`` has run to its end (its record counts are final)."""
        return DriftReport(
            comparison.system,
            comparison.collection,
            comparison.label,
            comparison.sides["ledger"],
            comparison.sides["target"],
            {kind: self.counts[kind] for kind in KINDS if self.counts[kind]},
            dict(sorted(self.fields.items())),
            tuple(self.kept),
        )
