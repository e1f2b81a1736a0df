"""The transactional outbox: rows written with the events (see eventstore_append), read,
marked published and purged by the relay."""

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
WHERE o.published_at IS NULL
ORDER BY o.position
LIMIT $1
FOR UPDATE OF o SKIP LOCKED
"""

_MARK = "UPDATE outbox SET published_at = now() WHERE position = ANY($1::bigint[])"

# The newest published row: the unpublished tail is short, so this walks back a few index entries.
_PUBLISHED_THROUGH = """
SELECT position FROM outbox WHERE published_at IS NOT NULL ORDER BY position DESC LIMIT 1
"""

_REPUBLISH = "UPDATE outbox SET published_at = NULL WHERE position > $1 AND published_at IS NOT NULL"

_PURGE = """
DELETE FROM outbox WHERE position IN (
    SELECT position FROM outbox
    WHERE published_at < now() - make_interval(secs => $1)
    LIMIT $2
)
"""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    position: int
    type: str  # as stored: may need upcasting
    payload: str  # the event as JSON text, as stored (its type and data not upcast)


async def unpublished(conn: asyncpg.Connection, limit: int) -> list[OutboxEntry]:
    """The oldest unpublished entries, locked until the caller's transaction ends."""
    return [OutboxEntry(*row) for row in await conn.fetch(_UNPUBLISHED, limit)]


async def mark_published(conn: asyncpg.Connection, positions: list[int]) -> None:
    await conn.execute(_MARK, positions)


async def published_through(conn: asyncpg.Connection) -> int:
    """The highest position marked published (0: none is, or all were purged)."""
    return int(await conn.fetchval(_PUBLISHED_THROUGH) or 0)


async def republish_after(conn: asyncpg.Connection, position: int) -> int:
    """Mark every published row after `position` unpublished again (the broker lost them);
    how many. The relay then publishes them again, in order, with the new ones."""
    status = await conn.execute(_REPUBLISH, position)
    return int(status.split()[-1])


async def purge_published(conn: asyncpg.Connection, older_than_seconds: float, limit: int = 10_000) -> int:
    """Delete up to `limit` rows published longer ago than the retention; how many went."""
    status = await conn.execute(_PURGE, older_than_seconds, limit)
    return int(status.split()[-1])


async def backlog(conn: asyncpg.Connection | Pool) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
