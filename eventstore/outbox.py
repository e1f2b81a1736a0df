"""The transactional outbox: rows written with the events (see eventstore_append), read
and purged by the relay, which records how far it published in `outbox_published`.

One relay at a time publishes (its lease), in position order, so what is published is a
prefix of the outbox: a row per batch (the last position it published, and when) marks it,
and the outbox rows are never updated (migration 0010)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from eventstore.pool import Pool

# Each event as the JSON text consumers receive (CONTRACT.md 6; service/broker.py), built by
# the database: the relay passes it through untouched unless its type needs upcasting, so a
# published event costs the process no decoding and no encoding (issue 18: about 2 % of
# `serve`'s CPU under addItem load). `recorded_at` is written the way Python's isoformat()
# writes the UTC datetime the event API returns: microseconds only when there are any.
_UNPUBLISHED = """
SELECT e.position, e.type, json_build_object(
           'event_id', e.event_id, 'event_type', e.type, 'stream_id', e.stream_id,
           'version', e.version, 'position', e.position::text, 'data', e.data,
           'metadata', e.metadata,
           'recorded_at', to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
               || CASE to_char(e.recorded_at, 'US') WHEN '000000' THEN ''
                  ELSE to_char(e.recorded_at, '.US') END || '+00:00'
       )::text
FROM outbox o JOIN events e ON e.position = o.position
WHERE o.position > $2 AND e.position > $2  -- both: a merge join starts each index there
ORDER BY o.position
LIMIT $1
"""

_MARK = """
INSERT INTO outbox_published (through) VALUES ($1) ON CONFLICT (through) DO UPDATE SET published_at = now()
"""

_PUBLISHED_THROUGH = "SELECT coalesce(max(through), 0) FROM outbox_published"

# Rows up to a mark older than the retention were published at least that long ago. Marks
# past the retention go too, but never the newest: it is how far the relay has got.
_PURGE = """
WITH cut AS (
    SELECT coalesce(max(through), 0) AS through FROM outbox_published
    WHERE published_at < now() - make_interval(secs => $1)
), gone AS (
    DELETE FROM outbox WHERE position IN (
        SELECT position FROM outbox WHERE position <= (SELECT through FROM cut) ORDER BY position LIMIT $2
    )
    RETURNING 1
)
SELECT count(*) FROM gone
"""
_PURGE_MARKS = """
DELETE FROM outbox_published
WHERE published_at < now() - make_interval(secs => $1)
  AND through < (SELECT max(through) FROM outbox_published)
"""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    position: int
    type: str  # as stored: may need upcasting
    payload: str  # the event as JSON text, as stored (its type and data not upcast)


async def unpublished(conn: asyncpg.Connection, after: int, limit: int) -> list[OutboxEntry]:
    """The oldest entries after `after` (where the relay's marks say it has published through)."""
    return [OutboxEntry(*row) for row in await conn.fetch(_UNPUBLISHED, limit, after)]


async def mark_published(conn: asyncpg.Connection, through: int) -> None:
    """Every row up to `through` is published (the caller published them in order)."""
    await conn.execute(_MARK, through)


async def published_through(conn: asyncpg.Connection | Pool) -> int:
    """The highest position marked published (0: none is)."""
    return int(await conn.fetchval(_PUBLISHED_THROUGH))


async def republish_after(conn: asyncpg.Connection, position: int) -> int:
    """Mark published only the rows up to `position` (the broker lost the later ones); how
    many rows the relay then publishes again, in order, with the new ones."""
    async with conn.transaction():
        before = await published_through(conn)
        await conn.execute("DELETE FROM outbox_published WHERE through > $1", position)
        if position > 0 and position < before:
            await mark_published(conn, position)
        return int(await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE position > $1 AND position <= $2", position, before
        ))


async def purge_published(conn: asyncpg.Connection, older_than_seconds: float, limit: int = 10_000) -> int:
    """Delete up to `limit` rows published longer ago than the retention; how many went."""
    purged = int(await conn.fetchval(_PURGE, older_than_seconds, limit))
    await conn.execute(_PURGE_MARKS, older_than_seconds)
    return purged


async def backlog(conn: asyncpg.Connection | Pool) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM outbox WHERE position > ({_PUBLISHED_THROUGH})"))
