"""The reference of workload 2: a plain eventsourcing Application (default JSON transcoder,
``eventsourcing.sqlite`` persistence) holding the same records as plain aggregates."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate

from ledger import Address, Change


class Record(Aggregate):
    """One external record; its events carry what the ledger's actions carry."""

    def __init__(self, address: str, fields: dict[str, Any]) -> None:
        self.address = address
        self.fields = dict(fields)

    class Created(Aggregate.Created):
        address: str
        fields: dict[str, Any]

    class Changed(Aggregate.Event):
        operation: str
        before: dict[str, Any]
        after: dict[str, Any]
        inputs: dict[str, Any]
        workflow: str | None
        batch: str
        actor: str | None
        sources: list[str]

        def apply(self, record: Record) -> None:
            record.fields.update(self.after)

    @classmethod
    def create(cls, address: Address, fields: dict[str, Any]) -> Record:
        return cls._create(cls.Created, id=address.entity_id, address=str(address), fields=fields)

    def change(self, change: Change, batch: str) -> None:
        self.trigger_event(
            self.Changed,
            operation=change.operation,
            before={name: self.fields[name] for name in change.values if name in self.fields},
            after=dict(change.values),
            inputs=change.inputs,
            workflow=change.workflow,
            batch=batch,
            actor=change.actor,
            sources=list(change.sources),
        )


class PlainApp(Application[UUID]):
    name = "Plain"


def open_plain(path: str) -> PlainApp:
    return PlainApp(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path})
