"""A state machine drives a real SQL table — a composite key, every column type — on SQLite and
PostgreSQL: batches (two runs of one batch at once included), outside edits of any field,
outside deletes, rollbacks under `skip` and `fields`, and adoption of drift. After every step
the table equals the model exactly, types included; each rollback lists exactly the records
changed since the batch as conflicts (under `skip`) and restores the rest; after adopting drift,
reconciliation is clean."""

from __future__ import annotations

import os
import tempfile
import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from adapters.sql import SqlAdapter, SqlCollection
from ledger import (
    Address,
    Change,
    DriftReport,
    RollbackScope,
    apply_reconciliation,
    apply_rollback,
    compare_with_target,
    open_ledger,
    plan_reconciliation,
    plan_rollback,
)
from ledger.keys import join_key
from ledger.runs import Run, Target
from ledger.tracking import track
from ledger.values import JSON_NULL, same

REGIONS = ["eu", "eu-west", "a b", "x/y", "50%", "ü", "o'brien"]
IDS = [-1, 2, 10]
FIELDS = ["note", "qty", "amount", "ratio", "active", "due", "seen_at", "meta"]
WHOLE = "(record)"
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)


def column_values(postgres: bool) -> dict[str, st.SearchStrategy[Any]]:
    """Values each column holds exactly on the engine (None: SQL NULL)."""
    moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1))
    moments = moments.map(lambda moment: moment.replace(microsecond=0))
    return {
        "note": st.none() | TEXT,
        "qty": st.none() | st.integers(-(2**63), 2**63 - 1),
        # SQLite keeps NUMERIC as a double: 15 significant digits are what it holds exactly.
        "amount": st.none()
        | st.decimals(
            min_value=-(10 ** (15 if postgres else 10)),
            max_value=10 ** (15 if postgres else 10),
            places=4,
            allow_nan=False,
        ),
        "ratio": st.none() | st.floats(allow_nan=False, allow_infinity=False),
        "active": st.none() | st.booleans(),
        "due": st.none() | st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 1, 1)),
        "seen_at": st.none()
        | (moments.map(lambda moment: moment.replace(tzinfo=UTC)) if postgres else moments),
        "meta": st.none()
        | st.just(JSON_NULL)
        | st.dictionaries(
            st.sampled_from(["$date", "_type_", "_data_", "a"]), st.none() | st.integers(0, 9)
        ),
    }


def make_table(url: str, postgres: bool) -> sa.Table:
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    table = sa.Table(
        "orders",
        metadata,
        sa.Column("region", sa.Text, primary_key=True),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("note", sa.Text),
        sa.Column("qty", sa.BigInteger),
        sa.Column("amount", sa.Numeric(20, 4)),
        sa.Column("ratio", sa.Float(precision=53)),
        sa.Column("active", sa.Boolean),
        sa.Column("due", sa.Date),
        sa.Column("seen_at", sa.DateTime(timezone=postgres)),
        sa.Column("meta", sa.JSON(none_as_null=True)),
    )
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(table),
            [
                {
                    "region": region,
                    "id": id_,
                    "note": f"{region}:{id_}",
                    "qty": 1,
                    "amount": Decimal("1.5000"),
                    "ratio": 0.5,
                    "active": True,
                    "due": date(2026, 1, 1),
                    "seen_at": None,
                    "meta": {"a": 1},
                }
                for region in REGIONS
                for id_ in IDS
            ],
        )
    engine.dispose()
    return table


def orders_machine(url: str, postgres: bool) -> type[RuleBasedStateMachine]:
    values = column_values(postgres)
    outside_values = iter(range(10**6, 10**9))

    class Orders(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.table = make_table(url, postgres)
            self.engine = sa.create_engine(url)
            self.adapter = SqlAdapter(
                "shop", url, {"orders": SqlCollection("orders", ("region", "id"))}
            )
            self.ledger = open_ledger(str(Path(tempfile.mkdtemp(prefix="orders-")) / "l.db"))
            track(self.ledger, self.adapter, "orders", batch="baseline")
            self.rows = {join_key([r, i]): (r, i) for r in REGIONS for i in IDS}
            self.model: dict[str, dict[str, Any] | None] = dict(self.adapter.scan("orders"))
            assert set(self.model) == set(self.rows)
            # Per batch: the model before it, the fields it set per key, and per key the
            # fields anything else changed since (WHOLE for a delete).
            self.batches: dict[str, dict[str, Any]] = {}
            self.rolled_back: set[str] = set()

        def teardown(self) -> None:
            self.adapter.close()
            self.engine.dispose()
            self.ledger.close()

        # Bookkeeping --------------------------------------------------------------------

        def _changed(self, key: str, fields: set[str], *, by: str | None = None) -> None:
            for name, batch in self.batches.items():
                if name != by and key in batch["fields"]:
                    batch["since"].setdefault(key, set()).update(fields)

        def _live(self) -> list[str]:
            return sorted(key for key, record in self.model.items() if record is not None)

        def _where(self, key: str) -> Any:
            region, id_ = self.rows[key]
            return sa.and_(self.table.c.region == region, self.table.c.id == id_)

        def _check_table(self) -> None:
            actual = dict(self.adapter.scan("orders"))
            for key, expected in self.model.items():
                assert same(actual.get(key), expected), (key, actual.get(key), expected)

        # Rules --------------------------------------------------------------------------

        @precondition(lambda self: bool(self._live()))
        @rule(data=st.data(), twice=st.booleans())
        def batch(self, data: st.DataObject, twice: bool) -> None:
            keys = data.draw(
                st.lists(st.sampled_from(self._live()), unique=True, min_size=1, max_size=4)
            )
            planned = {
                key: data.draw(
                    st.fixed_dictionaries({}, optional={f: values[f] for f in FIELDS}).filter(bool)
                )
                for key in keys
            }
            if not planned:
                return
            name = f"b{len(self.batches)}"
            changes = [
                Change(Address("shop", "orders", key), "update", values=fields)
                for key, fields in planned.items()
            ]
            target = Target(self.adapter, "orders")
            statuses: list[list[str]] = []

            def run() -> None:
                statuses.append([o.status for o in Run(self.ledger, name).apply(target, changes)])

            threads = [threading.Thread(target=run) for _ in range(2 if twice else 1)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert ["applied"] * len(changes) in statuses, statuses
            snapshot = {k: dict(v) if v is not None else None for k, v in self.model.items()}
            for key, fields in planned.items():
                self._changed(key, set(fields), by=name)
                self.model[key] = {**(self.model[key] or {}), **fields}
            self.batches[name] = {
                "before": snapshot,
                "fields": {key: set(fields) for key, fields in planned.items()},
                "since": {},
            }
            self._check_table()

        @precondition(lambda self: bool(self._live()))
        @rule(data=st.data())
        def outside_edit(self, data: st.DataObject) -> None:
            # Outside edits write values never seen before: an edit undone before anyone
            # looks (A -> B -> A) leaves no trace any system could find.
            key = data.draw(st.sampled_from(self._live()))
            field = data.draw(st.sampled_from(["note", "qty"]))
            value: Any = next(outside_values)
            value = f"outside {value}" if field == "note" else value
            with self.engine.begin() as connection:
                connection.execute(
                    sa.update(self.table).where(self._where(key)).values({field: value})
                )
            self.model[key] = {**(self.model[key] or {}), field: value}
            self._changed(key, {field})

        @precondition(lambda self: bool(self._live()))
        @rule(data=st.data())
        def outside_delete(self, data: st.DataObject) -> None:
            key = data.draw(st.sampled_from(self._live()))
            with self.engine.begin() as connection:
                connection.execute(sa.delete(self.table).where(self._where(key)))
            self.model[key] = None
            self._changed(key, {WHOLE})

        @precondition(lambda self: bool(set(self.batches) - self.rolled_back))
        @rule(data=st.data(), policy=st.sampled_from(["skip", "fields"]))
        def rollback(self, data: st.DataObject, policy: str) -> None:
            name = data.draw(st.sampled_from(sorted(set(self.batches) - self.rolled_back)))
            batch = self.batches[name]
            rollback = plan_rollback(
                self.ledger, RollbackScope(batches=(name,)), {"shop": self.adapter}, policy=policy
            )
            conflicted = {conflict.entity.split("/", 2)[2] for conflict in rollback.conflicts}
            changed_since = set(batch["since"])
            if policy == "skip":
                assert conflicted == changed_since, (
                    conflicted,
                    changed_since,
                    rollback.conflicts,
                    [
                        (a.operation, a.batch, a.before, a.after)
                        for c in rollback.conflicts
                        for a in self.ledger.history(Address.parse(c.entity))
                    ],
                )
            else:
                assert conflicted <= changed_since, (conflicted, changed_since)
            apply_rollback(self.ledger, rollback, {"shop": self.adapter})
            self.rolled_back.add(name)
            for key, fields in batch["fields"].items():
                since = batch["since"].get(key, set())
                if since and (policy == "skip" or WHOLE in since):
                    continue  # a conflict: left exactly as it is
                restored = fields - since
                before = batch["before"][key]
                if restored:
                    self.model[key] = {
                        **(self.model[key] or {}),
                        **{f: before[f] for f in restored},
                    }
                    self._changed(key, restored, by=name)
            self._check_table()

        @rule()
        def adopt_drift(self) -> None:
            adoption = plan_reconciliation(self.ledger, self.adapter, "orders", "target")
            apply_reconciliation(self.ledger, self.adapter, adoption)
            assert DriftReport.of(compare_with_target(self.ledger, self.adapter, "orders")).clean
            self._check_table()

    return Orders


STATEFUL = settings(
    max_examples=int(os.environ.get("STATEFUL_EXAMPLES", "15")),
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def table_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, bool]:
    if request.param == "sqlite":
        path = tmp_path / "shop.db"
        sa.create_engine(f"sqlite:///{path}").connect().close()  # the file exists
        return f"sqlite:///{path}", False
    url: str = request.getfixturevalue("postgres_url")
    return url.replace("postgresql://", "postgresql+psycopg://", 1), True


def test_the_table_always_equals_the_model(table_url: tuple[str, bool]) -> None:
    url, postgres = table_url
    run_state_machine_as_test(orders_machine(url, postgres), settings=STATEFUL)
