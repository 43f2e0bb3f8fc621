"""Importing a JSON Lines file of changes into the ledger: all or nothing, as one batch, and
importing the same file again records nothing twice.

Retry-safety rests on two names derived from the input itself: the batch is named for the
file's content (unless given), and each line's fingerprint for its batch, line number and text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ledger.application import Ledger
from ledger.change_files import BatchOptions, ChangeFile
from ledger.changes import Change, line_fingerprint
from ledger.errors import InvalidChange


def import_batch_id(content: bytes) -> str:
    """The default batch of an imported file: the same content always lands in the same batch."""
    return "import-" + hashlib.sha256(content).hexdigest()[:16]


@dataclass(frozen=True)
class PreparedImport:
    """A file's changes, checked and named, ready to record (nothing is recorded yet)."""

    changes: tuple[Change, ...]
    line_numbers: tuple[int, ...]
    options: BatchOptions  # with the batch filled in

    @classmethod
    def of(cls, file: ChangeFile, options: BatchOptions) -> PreparedImport:
        """Refuse an empty file or a line contradicting an option; name the batch and give
        every line without a fingerprint the one of its batch, number and text."""
        if not file.changes:
            raise InvalidChange(f"{file.path} holds no changes")
        options.refuse_contradictions(file.changes, file.line_numbers)
        if options.batch is None:
            options = replace(options, batch=import_batch_id(file.content))
        batch = options.batch
        assert batch is not None
        changes = tuple(
            change
            if change.fingerprint
            else replace(change, fingerprint=line_fingerprint(change.batch or batch, n, raw))
            for change, n, raw in zip(file.changes, file.line_numbers, file.raw_lines, strict=True)
        )
        return cls(changes, file.line_numbers, options)

    def record(
        self,
        ledger: Ledger,
        *,
        keep_open: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> ImportSummary:
        """Record every change in one transaction; the batch is closed unless ``keep_open``."""
        receipts = ledger.record_all(
            list(self.changes),
            line_numbers=list(self.line_numbers),
            close_batch=not keep_open,
            on_progress=on_progress,
            batch=self.options.batch,
            workflow=self.options.workflow,
            workflow_version=self.options.workflow_version,
            actor=self.options.actor,
            trigger=self.options.trigger,
        )
        new = sum(1 for receipt in receipts if not receipt.duplicate)
        return ImportSummary(
            batches=tuple(sorted({receipt.action.batch for receipt in receipts})),
            recorded=new,
            already_recorded=len(receipts) - new,
            closed=not keep_open,
        )


@dataclass(frozen=True)
class ImportSummary:
    """What an import recorded, and into which batches (lines may name their own)."""

    batches: tuple[str, ...]
    recorded: int
    already_recorded: int
    closed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "batch": self.batches[0] if len(self.batches) == 1 else None,
            "batches": list(self.batches),
            "recorded": self.recorded,
            "already_recorded": self.already_recorded,
            "closed": self.closed,
        }
