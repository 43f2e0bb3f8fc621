"""A `contacts` table for SQL-target tests: text ids 00000…, every row holding the same values."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def make_contacts(url: str, count: int, **values: Any) -> sa.Engine:
    """Create and fill the table (a column per value: text or integer); returns the engine."""
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    columns = [sa.Column(n, sa.Integer if type(v) is int else sa.String) for n, v in values.items()]
    table = sa.Table("contacts", metadata, sa.Column("id", sa.String, primary_key=True), *columns)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(sa.insert(table), [{"id": f"{i:05d}", **values} for i in range(count)])
    return engine
