"""The counters projection: its table (SQLAlchemy Core, created at start-up: no migration),
how events change it, and the query the API reads it with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import sqlalchemy as sa

from domain.aggregate import aggregate_id_of
from eventstore.pool import Pool
from eventstore.replicas import ReadPools
from readmodels.projection import LogEvent, Projection
from tests.counter.domain import CounterIncremented, CounterReset

COUNTER_VIEWS = sa.Table(
    "counter_views",
    sa.MetaData(),
    sa.Column("counter_id", sa.Text, primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)


@dataclass(frozen=True)
class CounterView:
    counter_id: str
    value: int
    version: int


class CounterProjection(Projection):
    name = "counters"
    event_types = (CounterIncremented.TYPE, CounterReset.TYPE)
    tables = (COUNTER_VIEWS.name,)

    async def apply(self, conn: asyncpg.Connection, events: Sequence[LogEvent]) -> None:
        # A version the row has applied already changes nothing: a retried batch is harmless.
        for event in events:
            reset = event.type == CounterReset.TYPE
            await conn.execute(
                f"""
                INSERT INTO {self.table("counter_views")} AS c (counter_id, value, version) VALUES ($1, $2, $3)
                ON CONFLICT (counter_id) DO UPDATE
                    SET value = (CASE WHEN $4 THEN 0 ELSE c.value END) + $2, version = $3
                    WHERE c.version < $3
                """,
                aggregate_id_of(event.stream_id), 0 if reset else event.data["by"], event.version, reset,
            )


async def counter_view(reads: ReadPools, counter_id: str, source: Pool | None = None) -> CounterView | None:
    rows = await reads.fetch(
        "SELECT counter_id, value, version FROM counter_views WHERE counter_id = $1", counter_id, prefer=source
    )
    return CounterView(*rows[0]) if rows else None
