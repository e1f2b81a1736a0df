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

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from eventstore import UpcasterRegistry
from readmodels.checkpoints import (
    PROJECTIONS_CHANNEL,
    ensure_checkpoint,
    lock_checkpoint,
    try_lease,
)
from readmodels.leases import name_session
from readmodels.projection import SHADOW_SUFFIX, Projection
from readmodels.runner import Follower, projection_connection


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
    meter = _Meter(live.name, on_progress)
    conn = await projection_connection(dsn)
    try:
        await name_session(conn, "rebuild")
        if not await try_lease(conn, shadow.checkpoint):
            raise RebuildBusy(f"a rebuild of {live.name} is already running")
        deferred = await _create_shadow(conn, live)
        # A shadow batch lost to a server crash goes together with its checkpoint
        # (and an unfinished rebuild starts over anyway): no need to wait for the flush.
        await conn.execute("SET synchronous_commit = off")
        await _catch_up(dsn, conn, follower, batch_size, meter)
        for definition in deferred:
            await conn.execute(definition)
        async with conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = on")  # the swap is durable
            await lock_checkpoint(conn, live.checkpoint)
            while True:
                batch = await follower.step_in_transaction(conn, batch_size)
                meter.events += batch.events
                if not batch.more:
                    break
            await _swap(conn, live, batch.after)
        return meter.report(batch.after, batch.head, done=True)
    finally:
        await conn.close()


class _Meter:
    def __init__(self, name: str, on_progress: Callable[[RebuildProgress], None] | None) -> None:
        self.name = name
        self.on_progress = on_progress
        self.started = time.perf_counter()
        self.events = 0

    def report(self, position: int, head: int, done: bool = False) -> RebuildProgress:
        elapsed = time.perf_counter() - self.started
        progress = RebuildProgress(self.name, position, head, self.events, elapsed, done)
        if self.on_progress is not None:
            self.on_progress(progress)
        return progress


async def _catch_up(
    dsn: str, conn: asyncpg.Connection, follower: Follower, batch_size: int, meter: _Meter
) -> None:
    """Fill the shadow until it is within a batch of the head.

    While one batch is written, the next is read on a second connection:
    decoding in this process overlaps the server's writing.
    """
    reader = await projection_connection(dsn)
    position = 0
    ahead = asyncio.create_task(follower.read(reader, position, batch_size))
    try:
        while True:
            events, after, head = await ahead
            if head - after <= batch_size:
                return
            ahead = asyncio.create_task(follower.read(reader, after, batch_size))
            await follower.write(conn, events, position, after)
            position = after
            meter.events += len(events)
            meter.report(position, head)
    finally:
        ahead.cancel()
        await asyncio.gather(ahead, return_exceptions=True)
        await reader.close()


async def _create_shadow(conn: asyncpg.Connection, live: Projection) -> list[str]:
    """Fresh shadow tables (a crashed rebuild's leftovers go) and a checkpoint at 0.

    The shadows keep the indexes that back constraints (the upserts need them);
    the others are dropped and their definitions returned, to be built once
    the tables are full: cheaper than maintaining them row by row.
    """
    deferred: list[str] = []
    async with conn.transaction():
        for table in live.tables:
            shadow = table + SHADOW_SUFFIX
            await conn.execute(f"DROP TABLE IF EXISTS {shadow}")
            await conn.execute(f"CREATE TABLE {shadow} (LIKE {table} INCLUDING ALL)")
            # LIKE copies no storage parameters (order_views' fillfactor): carried over here.
            options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE oid = $1::regclass", table)
            if options:
                await conn.execute(f"ALTER TABLE {shadow} SET ({', '.join(options)})")
            rows = await conn.fetch(
                "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def"
                " FROM pg_index i WHERE i.indrelid = $1::regclass"
                " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
                shadow,
            )
            for row in rows:
                await conn.execute(f"DROP INDEX {row['name']}")
                deferred.append(row["def"])
        await conn.execute(
            "INSERT INTO projection_checkpoints (name) VALUES ($1)"
            " ON CONFLICT (name) DO UPDATE SET position = 0, error = NULL, updated_at = now()",
            live.name + SHADOW_SUFFIX,
        )
        await ensure_checkpoint(conn, live.checkpoint)
    return deferred


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
