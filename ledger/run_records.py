"""What each run of a workflow did, kept for the triggers that compare a run with its own past.

A relative volume trigger asks for the median of the workflow's last runs, and a re-enable
rule for the outcome of a canary: a `RunRecord` per batch (id derived from the batch name)
keeps the counts by operation and refusal kind, the trip if one stopped the run, and whether
it ran to its end. Counts only, no values: a record stays a few hundred bytes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from ledger.domain import NAMESPACE
from ledger.triggers import RunStatistics, Trip


def run_record_id(batch: str) -> UUID:
    return uuid5(NAMESPACE, f"run:{batch}")


class RunRecord(Aggregate):
    """The statistics of one finished (or stopped) run."""

    def __init__(
        self,
        workflow: str,
        batch: str,
        actions: dict[str, int],
        refusals: dict[str, int],
        trip: dict[str, Any] | None,
        completed: bool,
    ) -> None:
        self.workflow = workflow
        self.batch = batch
        self.actions = actions
        self.refusals = refusals
        self.trip = trip
        self.completed = completed

    class Recorded(Aggregate.Created):
        workflow: str
        batch: str
        actions: dict[str, int]
        refusals: dict[str, int]
        trip: dict[str, Any] | None
        completed: bool

    @classmethod
    def of(
        cls,
        workflow: str,
        batch: str,
        statistics: RunStatistics,
        trip: Trip | None,
        completed: bool,
    ) -> RunRecord:
        return cls._create(
            cls.Recorded,
            id=run_record_id(batch),
            workflow=workflow,
            batch=batch,
            actions=dict(statistics.actions),
            refusals=dict(statistics.refusals),
            trip=None if trip is None else {"trigger": trip.trigger, "rule": trip.rule},
            completed=completed,
        )

    @property
    def statistics(self) -> RunStatistics:
        """The counts back as statistics, to judge a later run against."""
        return RunStatistics(actions=Counter(self.actions), refusals=Counter(self.refusals))
