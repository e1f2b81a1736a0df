"""Appending: group commit under one advisory lock, for a gap-free global order.

Every append in every process takes the same transaction-level advisory lock
before it reads the head position, so positions are handed out in commit
order with no holes: a reader paging `position > cursor` never misses a row
that commits later. The price, a serialized commit, is paid once per *batch*:
one task per process drains all waiting requests into one transaction
(group commit), so concurrent writers share the lock and the fsync.

Each request in a batch is judged on its own (expected versions, idempotency
keys, tracking) against the state read under the lock; a refused request
writes nothing and does not disturb the others.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from eventstore.errors import AlreadyProcessed, ConcurrencyConflict, DuplicateRequest
from eventstore.idempotency import fetch_outcomes
from eventstore.pool import dumps
from eventstore.records import (
    NOTIFY_CHANNEL,
    AppendRequest,
    AppendResult,
    RecordedEvent,
    StoredOutcome,
)

log = logging.getLogger(__name__)

APPEND_LOCK_KEY = 0x6576_656E_7467  # "eventg": the one lock all appenders share

_INSERT_EVENTS = """
INSERT INTO events (position, event_id, stream_id, version, type, data, metadata, owner, recorded_at)
SELECT p, e, s, v, t, d::jsonb, m::jsonb, o, $9
FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[],
            $8::text[]) AS u(p, e, s, v, t, d, m, o)
"""
_STREAM_VERSIONS = """
SELECT s, (SELECT version FROM events WHERE stream_id = s ORDER BY version DESC LIMIT 1)
FROM unnest($1::text[]) AS s
"""
_INSERT_KEYS = """
INSERT INTO idempotency_keys (scope, key, result)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[]::jsonb[])
"""
_EXISTING_TRACKING = """
SELECT p.consumer, p.message_id FROM processed_messages p
JOIN unnest($1::text[], $2::text[]) AS u(consumer, message_id)
  ON p.consumer = u.consumer AND p.message_id = u.message_id
"""
_INSERT_TRACKING = """
INSERT INTO processed_messages (consumer, message_id) SELECT * FROM unnest($1::text[], $2::text[])
"""


@dataclass
class _Pending:
    request: AppendRequest
    future: asyncio.Future[AppendResult]
    result: AppendResult | None = None
    error: Exception | None = None


@dataclass
class _Batch:
    """The rows one transaction writes, gathered while judging its requests."""

    columns: list[list[Any]] = field(default_factory=lambda: [[] for _ in range(8)])
    keys: list[tuple[str, str, str]] = field(default_factory=list)
    tracking: list[tuple[str, str]] = field(default_factory=list)


class Appender:
    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 500, outbox: bool = True) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._outbox = outbox
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def append(self, request: AppendRequest) -> AppendResult:
        """Append atomically, or raise ConcurrencyConflict / DuplicateRequest / AlreadyProcessed."""
        if not any(w.events for w in request.writes):
            raise ValueError("an append needs at least one event")
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(request, future))
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="eventstore-appender")
        return await asyncio.shield(future)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                try:
                    async with self._pool.acquire() as conn:
                        await self._commit(conn, batch)
                except Exception as error:  # the whole transaction failed: nothing was written
                    log.warning("append batch of %d failed: %r", len(batch), error)
                    for pending in batch:
                        pending.result, pending.error = None, error
                for pending in batch:
                    if pending.future.done():
                        continue
                    if pending.error is not None:
                        pending.future.set_exception(pending.error)
                    else:
                        assert pending.result is not None
                        pending.future.set_result(pending.result)

    async def _commit(self, conn: asyncpg.Connection, batch: list[_Pending]) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK_KEY)
            head, now = await conn.fetchrow(
                "SELECT coalesce(max(position), 0), clock_timestamp() FROM events"
            )
            versions = await self._stream_versions(conn, batch)
            used_keys = await self._used_keys(conn, batch)
            processed = await self._processed(conn, batch)

            rows = _Batch()
            for pending in batch:
                pending.error = _refusal(pending.request, versions, used_keys, processed)
                if pending.error is None:
                    head = _accept(pending, versions, head, now, rows, used_keys, processed)

            if rows.columns[0]:
                await conn.execute(_INSERT_EVENTS, *rows.columns, now)
                if self._outbox:
                    await conn.execute(
                        "INSERT INTO outbox (position) SELECT unnest($1::bigint[])",
                        rows.columns[0],
                    )
                if rows.keys:
                    await conn.execute(_INSERT_KEYS, *map(list, zip(*rows.keys, strict=True)))
                if rows.tracking:
                    await conn.execute(_INSERT_TRACKING, *map(list, zip(*rows.tracking, strict=True)))
                await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(head))

    @staticmethod
    async def _stream_versions(conn: asyncpg.Connection, batch: list[_Pending]) -> dict[str, int]:
        stream_ids = sorted({w.stream_id for p in batch for w in p.request.writes})
        rows = await conn.fetch(_STREAM_VERSIONS, stream_ids)
        return {stream_id: version or 0 for stream_id, version in rows}

    @staticmethod
    async def _used_keys(
        conn: asyncpg.Connection, batch: list[_Pending]
    ) -> dict[tuple[str, str], StoredOutcome]:
        return await fetch_outcomes(
            conn, [(k.scope, k.key) for p in batch for k in p.request.idempotency]
        )

    @staticmethod
    async def _processed(conn: asyncpg.Connection, batch: list[_Pending]) -> set[tuple[str, str]]:
        tracked = [p.request.tracking for p in batch if p.request.tracking is not None]
        if not tracked:
            return set()
        rows = await conn.fetch(
            _EXISTING_TRACKING, [t.consumer for t in tracked], [t.message_id for t in tracked]
        )
        return {(r["consumer"], r["message_id"]) for r in rows}


def _refusal(
    request: AppendRequest,
    versions: dict[str, int],
    used_keys: dict[tuple[str, str], StoredOutcome],
    processed: set[tuple[str, str]],
) -> Exception | None:
    tracking = request.tracking
    if tracking is not None and (tracking.consumer, tracking.message_id) in processed:
        return AlreadyProcessed(tracking.consumer, tracking.message_id)
    duplicates = {
        (k.scope, k.key): used_keys[(k.scope, k.key)]
        for k in request.idempotency
        if (k.scope, k.key) in used_keys
    }
    if duplicates:
        return DuplicateRequest(duplicates)
    for write in request.writes:
        actual = versions[write.stream_id]
        if write.expected_version is not None and write.expected_version != actual:
            return ConcurrencyConflict(write.stream_id, write.expected_version, actual)
    return None


def _accept(
    pending: _Pending,
    versions: dict[str, int],
    head: int,
    now: Any,
    rows: _Batch,
    used_keys: dict[tuple[str, str], StoredOutcome],
    processed: set[tuple[str, str]],
) -> int:
    """Assign positions and versions to an accepted request; returns the new head."""
    request = pending.request
    recorded: list[RecordedEvent] = []
    for write, event in request.events():
        stream_id = write.stream_id
        head += 1
        versions[stream_id] += 1
        recorded.append(
            RecordedEvent(
                position=head,
                event_id=event.event_id,
                stream_id=stream_id,
                version=versions[stream_id],
                type=event.type,
                data=event.data,
                metadata=event.metadata,
                recorded_at=now,
                owner=write.owner,
            )
        )
        for column, value in zip(
            rows.columns,
            (head, event.event_id, stream_id, versions[stream_id], event.type,
             dumps(event.data), dumps(event.metadata), write.owner),
            strict=True,
        ):
            column.append(value)
    stream_versions = {w.stream_id: versions[w.stream_id] for w in request.writes}
    for key in request.idempotency:
        covered = recorded[key.first : key.last]
        outcome = StoredOutcome(
            first_position=covered[0].position,
            last_position=covered[-1].position,
            stream_versions={e.stream_id: e.version for e in covered},
        )
        used_keys[(key.scope, key.key)] = outcome  # a later request in the batch is a repeat
        rows.keys.append((key.scope, key.key, dumps(outcome.to_json())))
    if request.tracking is not None:
        processed.add((request.tracking.consumer, request.tracking.message_id))
        rows.tracking.append((request.tracking.consumer, request.tracking.message_id))
    pending.result = AppendResult(events=recorded, stream_versions=stream_versions)
    return head
