"""Rebuilding a projection from position 0 without downtime.

The shadow projection fills `<table>__rebuild` copies (same columns and
indexes) under its own checkpoint while the live tables keep serving and the
live runner keeps following. Once the shadow is within a batch of the head,
one transaction locks the live checkpoint row (the live runner's next batch
waits on it), applies the last events to the shadow, drops the live tables,
renames the shadows into their place (indexes keep their names) and moves
the live checkpoint to the shadow's. Readers see the old tables or the new
ones, never a mix; the live runner resumes from the new checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from eventstore import UpcasterRegistry
from eventstore.pool import connect
from readmodels.checkpoints import (
    PROJECTIONS_CHANNEL,
    ensure_checkpoint,
    lock_checkpoint,
    try_lease,
)
from readmodels.projection import SHADOW_SUFFIX, Projection
from readmodels.runner import Follower


class RebuildBusy(Exception):
    """Another rebuild of the same projection is running."""


@dataclass(frozen=True)
class RebuildProgress:
    projection: str
    position: int  # the shadow's checkpoint
    head: int
    events: int  # events applied so far
    elapsed: float  # seconds
    done: bool = False

    @property
    def rate(self) -> float:
        """Log positions covered per second."""
        return self.position / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float:
        return (self.head - self.position) / self.rate if self.rate > 0 else 0.0


async def rebuild(
    dsn: str,
    projection_class: type[Projection],
    upcasters: UpcasterRegistry,
    *,
    batch_size: int = 5000,
    on_progress: Callable[[RebuildProgress], None] | None = None,
) -> RebuildProgress:
    live, shadow = projection_class(), projection_class(shadow=True)
    follower = Follower(shadow, upcasters)
    conn = await connect(dsn)
    try:
        if not await try_lease(conn, shadow.checkpoint):
            raise RebuildBusy(f"a rebuild of {live.name} is already running")
        await _create_shadow(conn, live)
        started = time.perf_counter()
        events = 0

        def report(position: int, head: int, done: bool = False) -> RebuildProgress:
            progress = RebuildProgress(
                live.name, position, head, events, time.perf_counter() - started, done
            )
            if on_progress is not None:
                on_progress(progress)
            return progress

        while True:
            batch = await follower.step(conn, batch_size)
            events += batch.events
            report(batch.after, batch.head)
            if batch.head - batch.after <= batch_size:
                break
        async with conn.transaction():
            await lock_checkpoint(conn, live.checkpoint)
            while True:
                batch = await follower.step_in_transaction(conn, batch_size)
                events += batch.events
                if not batch.more:
                    break
            await _swap(conn, live, batch.after)
        return report(batch.after, batch.head, done=True)
    finally:
        await conn.close()


async def _create_shadow(conn: asyncpg.Connection, live: Projection) -> None:
    """Fresh shadow tables (a crashed rebuild's leftovers go) and a checkpoint at 0."""
    async with conn.transaction():
        for table in live.tables:
            await conn.execute(f"DROP TABLE IF EXISTS {table}{SHADOW_SUFFIX}")
            await conn.execute(f"CREATE TABLE {table}{SHADOW_SUFFIX} (LIKE {table} INCLUDING ALL)")
        await conn.execute(
            "INSERT INTO projection_checkpoints (name) VALUES ($1)"
            " ON CONFLICT (name) DO UPDATE SET position = 0, error = NULL, updated_at = now()",
            live.name + SHADOW_SUFFIX,
        )
        await ensure_checkpoint(conn, live.checkpoint)


async def _indexes(conn: asyncpg.Connection, table: str) -> dict[str, str]:
    """Index name by what it indexes ("UNIQUE btree (id)"), for carrying names over."""
    rows = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1",
        table,
    )
    return {
        ("UNIQUE " if " UNIQUE " in f" {r['indexdef'].split(' ON ', 1)[0]} " else "")
        + r["indexdef"].split(" USING ", 1)[1]: r["indexname"]
        for r in rows
    }


async def _swap(conn: asyncpg.Connection, live: Projection, position: int) -> None:
    """Inside the transaction that holds the live checkpoint: shadows take the live tables' place."""
    tables = ", ".join(live.tables)
    await conn.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")
    for table in live.tables:
        names = await _indexes(conn, table)
        await conn.execute(f"DROP TABLE {table}")
        await conn.execute(f"ALTER TABLE {table}{SHADOW_SUFFIX} RENAME TO {table}")
        for key, name in (await _indexes(conn, table)).items():
            if key in names and names[key] != name:
                await conn.execute(f'ALTER INDEX "{name}" RENAME TO "{names[key]}"')
    await conn.execute(
        "UPDATE projection_checkpoints SET position = $2, error = NULL, updated_at = now() WHERE name = $1",
        live.checkpoint,
        position,
    )
    await conn.execute("DELETE FROM projection_checkpoints WHERE name = $1", live.name + SHADOW_SUFFIX)
    await conn.execute("SELECT pg_notify($1, $2)", PROJECTIONS_CHANNEL, f"{live.checkpoint}:{position}")
