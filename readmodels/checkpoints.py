"""Checkpoints and leases: where each projection is, and which process may move it.

The lease is a session-level advisory lock held by the connection that also
writes the projection's batches. If that connection dies, PostgreSQL drops
the lock and aborts the open batch together, so a process that lost its
lease can never commit another write: another process takes over from the
last committed checkpoint.
"""

from __future__ import annotations

import asyncpg

from eventstore.pool import Pool

PROJECTIONS_CHANNEL = "eventgraph_projections"  # payload: "<checkpoint>:<position>"
LEASE_NAMESPACE = 0x70726F6A  # "proj": first key of every projection's advisory lock


async def try_lease(conn: asyncpg.Connection, checkpoint: str) -> bool:
    return bool(
        await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", LEASE_NAMESPACE, checkpoint)
    )


async def ensure_checkpoint(conn: asyncpg.Connection | Pool, checkpoint: str) -> None:
    await conn.execute(
        "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        checkpoint,
    )


async def lock_checkpoint(conn: asyncpg.Connection, checkpoint: str) -> int:
    """The checkpoint's position, its row locked until the transaction ends.

    Every batch starts here, so batches of one projection (and a rebuild's
    swap, which moves the position) serialize on the row.
    """
    position = await conn.fetchval(
        "SELECT position FROM projection_checkpoints WHERE name = $1 FOR UPDATE", checkpoint
    )
    if position is None:
        raise LookupError(f"no checkpoint row for {checkpoint}")
    return int(position)


# One statement moves the checkpoint and queues its notice (sent at commit); with an
# expected position it moves only from there (a compare-and-set, for a write outside a
# transaction that locked the row).
_ADVANCE = """
WITH moved AS (
    UPDATE projection_checkpoints SET position = $2, error = NULL, updated_at = now()
    WHERE name = $1 AND ($3::bigint IS NULL OR position = $3)
    RETURNING position
)
SELECT pg_notify($4, $5) FROM moved
"""


async def advance(
    conn: asyncpg.Connection, checkpoint: str, position: int, *, expected: int | None = None
) -> bool:
    """Move the checkpoint (inside the batch's transaction, or alone with `expected`) and
    tell waiters at commit; False if it was not at `expected`."""
    moved = await conn.fetch(
        _ADVANCE, checkpoint, position, expected, PROJECTIONS_CHANNEL, f"{checkpoint}:{position}"
    )
    return bool(moved)


async def record_error(conn: asyncpg.Connection, checkpoint: str, error: str) -> None:
    await conn.execute(
        "UPDATE projection_checkpoints SET error = $2, updated_at = now() WHERE name = $1",
        checkpoint,
        error[:2000],
    )


async def position_of(db: Pool | asyncpg.Connection, checkpoint: str) -> int:
    value = await db.fetchval("SELECT position FROM projection_checkpoints WHERE name = $1", checkpoint)
    return int(value or 0)
