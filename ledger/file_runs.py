"""A JSON Lines file of changes applied to one system as one run (`ledger apply`).

What the run alone does not decide lives here: every line must be in the system and agree with
the options given for all of them, the run's changes go collection by collection in file order,
and the batch is closed only when it is whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ledger.application import Ledger
from ledger.change_files import BatchOptions, ChangeFile
from ledger.changes import Change
from ledger.errors import (
    CanaryLimit,
    InvalidChange,
    LanePaused,
    LedgerError,
    RunInterrupted,
    StaleWrite,
)
from ledger.lanes import LaneConfig
from ledger.ports import Adapter
from ledger.runs import Outcome, Run, Target

# Why a run stopped before its end: its canary limit, --stop-on-stale, its lane paused by
# another process ("paused") or by one of its own stop triggers ("tripped").
Stop = Literal["canary limit", "stale", "paused", "tripped"]


@dataclass(frozen=True)
class FileRunSummary:
    """What applying a file did: counts, what was refused, what is left, whether it closed."""

    batch: str
    counts: dict[str, int]
    refused: tuple[Outcome, ...]
    conflicts: tuple[Outcome, ...]
    left: int
    stopped: Stop | None
    closed: bool
    elapsed_seconds: float
    retries: int
    waited_seconds: float
    warnings: tuple[str, ...]
    limit: int | None
    keep_open: bool
    lane: dict[str, Any]  # the run's statistics, its trip, its canary limit
    pause: str | None = None  # why the lane refused the rest of the run
    outcomes: tuple[Outcome, ...] = ()  # every change's, in order (the HTTP API lists them)

    @property
    def done(self) -> int:
        """Lines applied now or before."""
        return self.counts.get("applied", 0) + self.counts.get("already_applied", 0)

    @property
    def stays_open(self) -> bool:
        """The batch was left open for the fixed lines (or the rest of a canary)."""
        return bool((self.refused or self.left) and not self.keep_open and self.done)

    def to_json(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "counts": dict(self.counts),
            "refused": [o.to_json() for o in self.refused],
            "conflicts": [o.to_json() for o in self.conflicts],
            "left": self.left,
            "stopped": self.stopped,
            "closed": self.closed,
            "elapsed_seconds": self.elapsed_seconds,
            "retries": self.retries,
            "waited_seconds": self.waited_seconds,
            "warnings": list(self.warnings),
            "lane": self.lane,
            "pause": self.pause,
        }


def checked_for(file: ChangeFile, system: str, options: BatchOptions) -> tuple[Change, ...]:
    """The file's changes, each in ``system`` and agreeing with the options, or a refusal
    naming the line, before anything is opened or written."""
    for change, number in zip(file.changes, file.line_numbers, strict=True):
        if change.address.system != system:
            raise InvalidChange(
                f"{change.address} is not in system {system!r}", line=number, field="entity"
            )
    options.refuse_contradictions(file.changes, file.line_numbers)
    return file.changes


class FileRun:
    """One `apply` of a file: check the targets first, then apply, then settle the batch."""

    def __init__(
        self,
        ledger: Ledger,
        adapter: Adapter,
        changes: tuple[Change, ...],
        options: BatchOptions,
        *,
        limit: int | None = None,
        stop_on_stale: bool = False,
        keep_open: bool = False,
        started: float | None = None,
        lanes: Mapping[str, LaneConfig] | None = None,
    ):
        assert options.batch is not None, "a run needs its batch"
        self.ledger = ledger
        self.adapter = adapter
        self.changes = changes
        self.batch = options.batch
        self.limit = limit
        self.keep_open = keep_open
        self.started = time.monotonic() if started is None else started
        self.run = Run(
            ledger,
            options.batch,
            workflow=options.workflow,
            workflow_version=options.workflow_version,
            actor=options.actor,
            trigger=options.trigger,
            limit=limit,
            stop_on_stale=stop_on_stale,
            lanes=lanes,
        )

    def check(self) -> list[str]:
        """Ask each target whether its writes can be trusted, before any is made: raises if
        they must be and are not; returns the warnings to show before the run."""
        warnings: list[str] = []
        for collection, group in _by_collection(self.changes):
            keys = [c.address.key for c in group if c.operation != "create"]
            warnings += self.run.check(Target(self.adapter, collection), keys)
        return warnings

    def apply(self, on_progress: Callable[[int], None] | None = None) -> FileRunSummary:
        """Apply every change; a canary limit, `--stop-on-stale` or the lane (paused by another
        process, or by a stop trigger of this run) stops the run (counted), an error after
        writes landed says how many did; a run that ends is judged and recorded (`Run.finish`);
        a whole batch is closed. A lane paused before anything landed refuses the run."""
        run = self.run
        outcomes: list[Outcome] = []
        stopped: CanaryLimit | StaleWrite | LanePaused | None = None
        try:
            for collection, group in _by_collection(self.changes):
                outcomes += run.apply(
                    Target(self.adapter, collection), group, on_progress=on_progress
                )
        except (CanaryLimit, StaleWrite) as error:
            stopped = error  # the run counted what it did before it stopped
        except LanePaused as error:
            if run.lane.trip is None and not sum(run.counts.values()):
                raise  # refused at the gate before anything: nothing was written
            stopped = error
        except LedgerError as error:
            if not run.counts["applied"]:
                raise
            raise RunInterrupted(
                f"{error} -- the run stopped after {run.counts['applied']} write(s) of batch "
                f"{self.batch} had landed (recorded); run the same command again to go on "
                "(nothing is applied twice)"
            ) from None
        refused = [o for o in outcomes if o.status in ("stale", "failed", "pending")]
        if isinstance(stopped, StaleWrite):
            refused.append(
                Outcome(
                    stopped.record, "stale", None, stopped.field, stopped.expected, stopped.actual
                )
            )
        if not isinstance(stopped, LanePaused):
            run.finish(completed=not isinstance(stopped, StaleWrite))
        left = len(self.changes) - sum(run.counts.values())
        done = run.counts["applied"] + run.counts["already_applied"]
        # A batch with refused, pending or unapplied lines stays open, so the fixed lines can
        # join it and `recover` can record a pending write there.
        closed = not self.keep_open and not refused and not left and done > 0
        if closed:
            self.ledger.close_batch(self.batch)
        activity = getattr(self.adapter, "activity", None)  # adapters that count their requests
        return FileRunSummary(
            batch=self.batch,
            counts=dict(run.counts),
            refused=tuple(refused),
            conflicts=tuple(o for o in outcomes if o.conflict),
            left=left,
            stopped=_stop(stopped, run),
            closed=closed,
            elapsed_seconds=round(time.monotonic() - self.started, 3),
            retries=run.retries + (activity.retries if activity else 0),
            waited_seconds=round(activity.waited, 3) if activity else 0.0,
            warnings=tuple(run.warnings + (activity.warnings if activity else [])),
            limit=run.limit,
            keep_open=self.keep_open,
            lane=run.lane.to_json(),
            pause=str(stopped) if isinstance(stopped, LanePaused) else None,
            outcomes=tuple(outcomes),
        )


def _stop(stopped: LedgerError | None, run: Run) -> Stop | None:
    if stopped is None:
        return None
    if isinstance(stopped, LanePaused):
        return "tripped" if run.lane.trip is not None else "paused"
    return "canary limit" if isinstance(stopped, CanaryLimit) else "stale"


def _by_collection(changes: tuple[Change, ...]) -> Iterator[tuple[str, list[Change]]]:
    """Consecutive changes to the same collection, in file order."""
    group: list[Change] = []
    for change in changes:
        if group and change.address.collection != group[-1].address.collection:
            yield group[-1].address.collection, group
            group = []
        group.append(change)
    if group:
        yield group[-1].address.collection, group
