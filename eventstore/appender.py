"""Appending: group commit under one advisory lock, for a gap-free global order.

Every append in every process takes the same transaction-level advisory lock
before it reads the head position, so positions are handed out in commit
order with no holes: a reader paging `position > cursor` never misses a row
that commits later. The price, a serialized commit, is paid once per *batch*:
one task per process drains all waiting requests into one transaction
(group commit), so concurrent writers share the lock and the fsync.

The batch is one call of the SQL function `eventstore_append` (migration
0004): one round trip, one transaction. Each request in it is judged on its
own (expected versions, idempotency keys, tracking) against the state under
the lock; a refused request writes nothing and does not disturb the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import asyncpg

from eventstore.errors import (
    AlreadyProcessed,
    ConcurrencyConflict,
    DuplicateRequest,
    StoreUnavailable,
)
from eventstore.metrics import APPEND_SECONDS, count_appended
from eventstore.pool import DROPPED, Pool, dumps
from eventstore.records import (
    NOTIFY_CHANNEL,
    AppendRequest,
    AppendResult,
    RecordedEvent,
    StoredOutcome,
)
from eventstore.tracing import span

log = logging.getLogger(__name__)

APPEND_LOCK_KEY = 0x6576_656E_7467  # "eventg": the one lock all appenders share

_APPEND = "SELECT * FROM eventstore_append($1::text::jsonb, $2, $3, $4)"


@dataclass
class _Pending:
    request: AppendRequest
    future: asyncio.Future[AppendResult]
    result: AppendResult | None = None
    error: Exception | None = None


class Appender:
    def __init__(
        self,
        pool: Pool,
        *,
        max_batch: int = 500,
        in_flight: int = 2,
        outbox: bool = True,
    ) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._in_flight = in_flight  # batches under way at once: one commits, one waits its turn
        self._outbox = outbox
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def append(self, request: AppendRequest) -> AppendResult:
        """Append atomically, or raise ConcurrencyConflict / DuplicateRequest / AlreadyProcessed."""
        if not any(w.events for w in request.writes):
            raise ValueError("an append needs at least one event")
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(request, future))
        self._wakeup.set()
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(), name=f"eventstore-appender-{i}")
                for i in range(self._in_flight)
            ]
        # Not shielded: a cancelled caller's request is still appended; its result is dropped.
        with span("eventstore.append"):
            return await future

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _run(self) -> None:
        # Several of these share the queue; the advisory lock orders their commits.
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                async with self._pool.acquire() as conn:
                    try:
                        await self._commit(conn, batch)
                    except BaseException as error:
                        conn.terminate()  # its state is unknown: the pool opens a fresh one
                        if isinstance(error, DROPPED):
                            self._pool.expire_connections()  # its siblings likely died too
                        raise
            except Exception as error:  # the batch's one transaction failed or was cut off
                log.warning("append batch of %d failed: %r", len(batch), error)
                for pending in batch:
                    pending.result = None
                    pending.error = StoreUnavailable(f"the append failed: {error!r}")
                    pending.error.__cause__ = error
            for pending in batch:
                if pending.future.done():
                    continue
                if pending.error is not None:
                    pending.future.set_exception(pending.error)
                else:
                    assert pending.result is not None
                    pending.future.set_result(pending.result)

    async def _commit(self, conn: asyncpg.Connection, batch: list[_Pending]) -> None:
        requests = [pending.request for pending in batch]
        writes = [w for r in requests for w in r.writes]
        events = [e for w in writes for e in w.events]
        keys = [k for r in requests for k in r.idempotency]
        batch_json = {
            "r_writes": [len(r.writes) for r in requests],
            "r_keys": [len(r.idempotency) for r in requests],
            "r_consumer": [r.tracking.consumer if r.tracking else None for r in requests],
            "r_message": [r.tracking.message_id if r.tracking else None for r in requests],
            "w_stream": [w.stream_id for w in writes],
            "w_expected": [w.expected_version for w in writes],
            "w_owner": [w.owner for w in writes],
            "w_events": [len(w.events) for w in writes],
            "e_id": [e.event_id for e in events],
            "e_type": [e.type for e in events],
            "e_data": [e.data for e in events],
            "e_meta": [e.metadata for e in events],
            "k_scope": [k.scope for k in keys],
            "k_key": [k.key for k in keys],
            "k_first": [k.first for k in keys],
            "k_last": [k.last for k in keys],
        }
        started = time.perf_counter()
        rows = await conn.fetch(
            _APPEND, dumps(batch_json), self._outbox, NOTIFY_CHANNEL, APPEND_LOCK_KEY
        )
        APPEND_SECONDS.observe(time.perf_counter() - started)
        for pending, row in zip(batch, rows, strict=True):
            pending.result, pending.error = _outcome(pending.request, row)
            for event in pending.result.events if pending.result else ():
                count_appended(event.type)


def _outcome(
    request: AppendRequest, row: asyncpg.Record
) -> tuple[AppendResult | None, Exception | None]:
    status, detail = row["status"], row["detail"]
    if status == "conflict":
        return None, ConcurrencyConflict(detail["stream_id"], detail["expected"], detail["actual"])
    if status == "duplicate":
        return None, DuplicateRequest(
            {(d["scope"], d["key"]): StoredOutcome.from_json(d["result"]) for d in detail}
        )
    if status == "processed":
        return None, AlreadyProcessed(detail["consumer"], detail["message_id"])
    recorded = [
        RecordedEvent(
            position=position,
            event_id=event.event_id,
            stream_id=write.stream_id,
            version=version,
            type=event.type,
            data=event.data,
            metadata=event.metadata,
            recorded_at=row["recorded_at"],
            owner=write.owner,
        )
        for (write, event), position, version in zip(
            request.events(), row["positions"], row["versions"], strict=True
        )
    ]
    stream_versions = {e.stream_id: e.version for e in recorded}
    return AppendResult(events=recorded, stream_versions=stream_versions), None
