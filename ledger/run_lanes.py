"""A run's lane: the gate before each chunk, the stop triggers after it, the record at its end.

A `Run` asks `RunLane.admit` before a chunk declares anything (the gate, `Ledger.admit`: a
pause made meanwhile by any process stops the run there) and hands it the chunk's outcomes
once they are settled (`judge`): applied actions with their watched fields' moves and their
sources' times, stale and failed refusals. The lane's triggers (`ledger.triggers.check_run`)
judge the run so far; a trip pauses the lane with its evidence (`trip_lane`), records the run
as stopped (`record_run`) and stops it with `LanePaused`: what the chunk wrote stays, written
and settled, nothing further is. A run that ends is judged once more (``too_few``) and
recorded, so later runs have a past to be compared with and a canary is proof.

Per action the statistics cost O(1): counters, the watched fields only, the oldest source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ledger.application import Ledger
from ledger.changes import Change
from ledger.errors import LanePaused
from ledger.lane_control import recent_runs, record_run, trip_lane
from ledger.lanes import Canary, LaneConfig
from ledger.logs import get_logger
from ledger.settlement import Outcome
from ledger.triggers import RunStatistics, Triggers, Trip, check_run, source_times
from ledger.values import ABSENT

log = get_logger(__name__)


class RunLane:
    """The lane side of one run (one batch) of ``workflow``, with its lane row if any."""

    def __init__(
        self,
        ledger: Ledger,
        batch: str,
        workflow: str | None,
        lanes: Mapping[str, LaneConfig] | LaneConfig | None,
    ):
        self.ledger = ledger
        self.batch = batch
        self.workflow = workflow
        self.config = _row(workflow, lanes)
        self.triggers = self.config.triggers if self.config is not None else Triggers()
        self.statistics = RunStatistics.watching(self.triggers)
        self.trip: Trip | None = None  # the trigger that paused the lane during this run
        self.canary: Canary | None = None  # admitted while the lane is paused
        self._recent: list[RunStatistics] | None = None
        self._finished = False

    def admit(self, changes: Sequence[Change]) -> Canary | None:
        """The gate, before anything of these changes is written (`LanePaused` if paused);
        the canary this batch is, when its paused lane admits it."""
        canaries = self.ledger.admit(changes, self.batch)
        self.canary = canaries.get(self.workflow) if self.workflow is not None else None
        return self.canary

    def judge(self, outcomes: Sequence[Outcome]) -> None:
        """Count a settled chunk, then ask the triggers; a trip stops the run here."""
        statistics, watched = self.statistics, self.statistics.watched
        dated = self.triggers.source_age is not None
        for outcome in outcomes:
            if outcome.status == "applied" and outcome.receipt is not None:
                action = outcome.receipt.action
                changes = {
                    name: (action.before.get(name, ABSENT), action.after.get(name, ABSENT))
                    for name in watched
                    if name in action.before or name in action.after
                }
                sources = source_times(action.sources) if dated else None
                statistics.add_action(action.operation, action.entity, changes, sources)
            elif outcome.status == "already_applied":
                statistics.add_already()
            elif outcome.status in ("stale", "failed"):
                statistics.add_refusal(outcome.status)
        if self.config is None or self._finished:
            return
        trip = check_run(self.triggers, statistics, self._recent_runs(), now=datetime.now(UTC))
        if trip is not None:
            self._stop(trip)

    def finish(self, *, completed: bool = True) -> Trip | None:
        """Judge what needs the run's end (``too_few``: a trip pauses the lane for the next
        run) and record the run; once (a run stopped by its trip is recorded already)."""
        if self._finished or self.workflow is None:
            return None
        self._finished = True
        trip = None
        if self.config is not None:
            trip = check_run(
                self.triggers,
                self.statistics,
                self._recent_runs(),
                now=datetime.now(UTC),
                ended=True,
            )
        if trip is not None:
            self._trip(trip)
        record_run(
            self.ledger, self.workflow, self.batch, self.statistics, trip=trip, completed=completed
        )
        return trip

    def _trip(self, trip: Trip) -> None:
        """Pause the lane with the trip's evidence, and say so in the log."""
        assert self.workflow is not None
        self.trip = trip
        trip_lane(self.ledger, self.workflow, trip, batch=self.batch)
        log.warning(
            "lane.tripped",
            workflow=self.workflow,
            batch=self.batch,
            trigger=trip.trigger,
            rule=trip.rule,
        )

    def _stop(self, trip: Trip) -> None:
        assert self.workflow is not None
        self._finished = True
        self._trip(trip)
        record_run(
            self.ledger, self.workflow, self.batch, self.statistics, trip=trip, completed=False
        )
        raise LanePaused(
            f"workflow {self.workflow!r} paused by stop trigger {trip.trigger}: {trip.rule}; "
            f"the run of batch {self.batch} stopped after the chunk that tripped it "
            f"({self.statistics.total_actions} action(s) applied, recorded), nothing further "
            f"was written. See `ledger lane {self.workflow}`; it acts again after "
            f"`ledger enable {self.workflow}` with the proof its lane asks for",
            workflow=self.workflow,
        )

    def _recent_runs(self) -> list[RunStatistics]:
        """The workflow's past runs, read once and only for a relative volume trigger."""
        if self._recent is None:
            depth = max(
                (v.runs for v in self.triggers.volume.values() if v.above_median_percent),
                default=0,
            )
            self._recent = (
                recent_runs(self.ledger, self.workflow, depth) if depth and self.workflow else []
            )
        return self._recent

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "statistics": self.statistics.to_json(),
            "trip": None
            if self.trip is None
            else {"trigger": self.trip.trigger, "rule": self.trip.rule},
            "canary": None if self.canary is None else self.canary.limit,
        }


def _row(
    workflow: str | None, lanes: Mapping[str, LaneConfig] | LaneConfig | None
) -> LaneConfig | None:
    if workflow is None or lanes is None:
        return None
    if isinstance(lanes, LaneConfig):
        return lanes if lanes.workflow == workflow else None
    return lanes.get(workflow)
