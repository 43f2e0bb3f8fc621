"""Changes as a user hands them over: a JSON Lines file (or stdin), read strictly, and the
options given for all of its lines (`--batch`, `--workflow`, …) checked against each line.

Shared by importing (recording) and applying a file, so both refuse the same input the same
way, naming the line, before anything is recorded or written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ledger.changes import Change, iter_changes
from ledger.errors import InvalidChange


@dataclass(frozen=True)
class BatchOptions:
    """What a command says about every change it records: each may be left unsaid (None)."""

    batch: str | None = None
    workflow: str | None = None
    workflow_version: str | None = None
    actor: str | None = None
    trigger: str | None = None

    def given(self) -> dict[str, str | None]:
        """The options by name, in a fixed order (the order lines are checked in)."""
        return {
            "batch": self.batch,
            "workflow": self.workflow,
            "workflow_version": self.workflow_version,
            "actor": self.actor,
            "trigger": self.trigger,
        }

    def refuse_contradictions(
        self, changes: Sequence[Change], lines: Sequence[int] | None = None
    ) -> None:
        """A change that names another batch, workflow, actor… than an option given for all of
        them is refused naming its line, before anything is recorded or written."""
        for number, change in enumerate(changes):
            for name, given in self.given().items():
                own = getattr(change, name)
                if given is not None and own is not None and own != given:
                    option = name.replace("_", "-")
                    raise InvalidChange(
                        f"{change.address}: the change says {name} {own!r} but --{option} says "
                        f"{given!r}; remove one of them",
                        line=lines[number] if lines is not None else None,
                        field=name,
                    )


@dataclass(frozen=True)
class ChangeFile:
    """A JSON Lines file of changes, every line UTF-8 and parsed; blank lines skipped."""

    path: Path
    content: bytes
    changes: tuple[Change, ...]
    line_numbers: tuple[int, ...]  # each change's line in the file
    raw_lines: tuple[bytes, ...]  # each change's line as written

    @classmethod
    def read(cls, path: Path) -> ChangeFile:
        try:
            content = path.read_bytes()
        except OSError as error:
            raise InvalidChange(f"{path} cannot be read: {error.strerror}") from None
        lines = content.splitlines()
        for number, line in enumerate(lines, start=1):
            utf8_text(line, str(path), number)
        numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
        return cls(
            path,
            content,
            tuple(iter_changes(lines)),
            tuple(n for n, _ in numbered),
            tuple(line for _, line in numbered),
        )


def utf8_text(data: bytes, where: str, line: int | None = None) -> str:
    """Input text, decoded strictly: a byte that is not UTF-8 is refused naming where it is."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidChange(
            f"{where} is not UTF-8 text (byte {data[error.start]:#04x} at column "
            f"{error.start + 1}); save it as UTF-8",
            line=line,
        ) from None
