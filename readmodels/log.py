"""Reading the global log for projections: only their types, only the columns they use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from eventstore import UpcasterRegistry
from eventstore.pool import Pool
from readmodels.projection import LogEvent

# How far one batch looks ahead, in positions per event asked for: the checkpoint
# moves past the positions scanned (its lag reads zero once it has seen the head),
# and the scan stays small. When the planner picks a bitmap scan of the window (it
# does when the log has no statistics yet, after a bulk load), it reads and sorts
# every matching row of the window: a fixed window of 100,000 positions cost
# ~70 ms a batch of 1,000, and a rebuild in such batches ran at 13,000 events/s.
SCAN_WINDOW_PER_EVENT = 4

_BATCH = (
    "SELECT position, stream_id, version, type, data, recorded_at{} FROM events"
    " WHERE position > $1 AND position <= $2 AND type = ANY($3::text[])"
    " ORDER BY position LIMIT $4"
)
_READ = _BATCH.format("")
_READ_TRACED = _BATCH.format(", metadata->>'traceparent'")  # only while spans record


async def head_position(conn: asyncpg.Connection | Pool) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))


async def read_batch(
    conn: asyncpg.Connection,
    upcasters: UpcasterRegistry,
    stored_types: Sequence[str],
    after: int,
    limit: int,
    head: int | None = None,
    traceparents: list[str] | None = None,
) -> tuple[list[LogEvent], int, int]:
    """Events of `stored_types` after `after`, upcast; the position the batch covers; the head.

    Positions are gap-free and handed out in commit order (eventstore/appender.py),
    so every position up to the head read here (or given: read before) is committed and
    visible: moving the checkpoint to the covered position can never skip a late commit.

    Given `traceparents` (a list, while spans record), the statement also reads the
    events' traceparents and adds those it finds to it (only sampled flows write one).
    """
    if head is None:
        head = await head_position(conn)
    if head <= after:
        return [], after, head
    upto = min(head, after + limit * SCAN_WINDOW_PER_EVENT)
    rows: list[Any] = await conn.fetch(
        _READ if traceparents is None else _READ_TRACED, after, upto, stored_types, limit
    )
    if traceparents is not None:
        traceparents += [row[6] for row in rows if row[6] is not None]
        rows = [row[:6] for row in rows]
    if len(rows) == limit:
        upto = rows[-1][0]
    upcast = upcasters.upcast
    events = []
    for position, stream_id, version, type_, data, recorded_at in rows:
        type_, data = upcast(type_, data)
        events.append(LogEvent(position, stream_id, version, type_, data, recorded_at))
    return events, upto, head
