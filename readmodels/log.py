"""Reading the global log for projections: only their types, only the columns they use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from eventstore import UpcasterRegistry
from eventstore.pool import Pool
from readmodels.checkpoints import PROJECTIONS_CHANNEL
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


# A follower's step in one statement (readmodels/runner.py, ROUND TRIPS): its checkpoint,
# the head, the next batch of its types from there; and, when that batch holds none of
# them, the checkpoint moved past the positions scanned (only from where it was read: a
# compare-and-set), with its notice. The first row carries the positions whether or not
# the batch has events (their columns are then null).
_STEP = """
WITH win AS (
    SELECT c.position AS before, h.head, least(h.head, c.position + $3::bigint * {window}) AS upto
    FROM projection_checkpoints c, (SELECT coalesce(max(position), 0) AS head FROM events) h
    WHERE c.name = $1
), batch AS (
    -- the bounds as values computed first (not a join with win), so that they bound the
    -- index scan: joined, a plan could walk the log from its start to the checkpoint
    SELECT e.position, e.stream_id, e.version, e.type, e.data, e.recorded_at{traced}
    FROM events e
    WHERE e.position > (SELECT before FROM win) AND e.position <= (SELECT upto FROM win)
      AND e.type = ANY($2::text[])
    ORDER BY e.position
    LIMIT $3
), moved AS (
    UPDATE projection_checkpoints c SET position = win.upto, error = NULL, updated_at = now()
    FROM win
    WHERE c.name = $1 AND c.position = win.before AND win.upto > win.before AND NOT EXISTS (SELECT FROM batch)
    RETURNING pg_notify($4, $1 || ':' || win.upto)
)
SELECT win.before, win.head, win.upto, EXISTS (SELECT FROM moved), b.*
FROM win LEFT JOIN batch b ON true
ORDER BY b.position
"""
_STEP_READ = _STEP.format(window=SCAN_WINDOW_PER_EVENT, traced="")
_STEP_TRACED = _STEP.format(window=SCAN_WINDOW_PER_EVENT, traced=", e.metadata->>'traceparent'")


@dataclass(frozen=True, slots=True)
class Step:
    """What one step read: the checkpoint (`before`), the head, the batch's events and the
    position they cover; `moved`: the checkpoint went there already (the batch had none)."""

    before: int
    head: int
    events: list[LogEvent]
    upto: int
    moved: bool


async def step_from_checkpoint(
    conn: asyncpg.Connection,
    upcasters: UpcasterRegistry,
    stored_types: Sequence[str],
    checkpoint: str,
    limit: int,
    traceparents: list[str] | None = None,
) -> Step:
    """The next batch of `stored_types` after `checkpoint`, upcast, in one round trip; a batch
    of none moves the checkpoint in the same statement. See read_batch for why a covered
    position is safe to move to, and for `traceparents`."""
    rows: list[Any] = await conn.fetch(
        _STEP_READ if traceparents is None else _STEP_TRACED,
        checkpoint, stored_types, limit, PROJECTIONS_CHANNEL,
    )
    if not rows:
        raise LookupError(f"no checkpoint row for {checkpoint}")
    before, head, upto, moved = rows[0][:4]
    if rows[0][4] is None:
        return Step(before, head, [], upto if upto > before else before, moved)
    if len(rows) == limit:
        upto = rows[-1][4]
    return Step(before, head, _log_events(rows, 4, upcasters, traceparents), upto, False)


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
    if len(rows) == limit:
        upto = rows[-1][0]
    return _log_events(rows, 0, upcasters, traceparents), upto, head


def _log_events(
    rows: Sequence[Any], first: int, upcasters: UpcasterRegistry, traceparents: list[str] | None
) -> list[LogEvent]:
    """The events of rows whose columns from `first` on are position, stream id, version,
    type, data, recorded_at and, given `traceparents`, the traceparent (added to it)."""
    if traceparents is not None:
        traceparents += [row[first + 6] for row in rows if row[first + 6] is not None]
    position, stream_id, version, type_, data, recorded_at = range(first, first + 6)
    upcast = upcasters.upcast
    events = []
    for row in rows:
        latest, upcast_data = upcast(row[type_], row[data])
        events.append(LogEvent(row[position], row[stream_id], row[version], latest, upcast_data, row[recorded_at]))
    return events
