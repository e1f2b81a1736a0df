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
A request PostgreSQL itself refuses (data it cannot store) is found by splitting
the batch, and fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import asyncpg

from eventstore.errors import (
    AlreadyProcessed,
    ConcurrencyConflict,
    DuplicateRequest,
    StoreUnavailable,
    UnstorableData,
)
from eventstore.metrics import APPEND_SECONDS, count_appended, observing
from eventstore.pool import Pool, dumps, unreachable
from eventstore.records import (
    NOTIFY_CHANNEL,
    AppendRequest,
    AppendResult,
    RecordedEvent,
    StoredOutcome,
)
from eventstore.tracing import span

APPEND_LOCK_KEY = 0x6576_656E_7467  # "eventg": the one lock all appenders share
_STOP_BACKEND_SECONDS = 2.0

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
        self._closed = False

    async def append(self, request: AppendRequest) -> AppendResult:
        """Append atomically, or raise ConcurrencyConflict / DuplicateRequest / AlreadyProcessed,
        UnstorableData (PostgreSQL refused this request's data) or StoreUnavailable."""
        if not any(w.events for w in request.writes):
            raise ValueError("an append needs at least one event")
        if self._closed:
            raise StoreUnavailable("the event store is closed")
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(request, future))
        self._wakeup.set()
        if len(self._tasks) < self._in_flight or any(task.done() for task in self._tasks):
            self._start_tasks()
        # Not shielded: a cancelled caller's request is still appended; its result is dropped.
        with span("eventstore.append"):
            return await future

    def _start_tasks(self) -> None:
        """Up to `in_flight` running tasks (one cancelled by someone else is replaced: a
        request must never wait on a queue nobody drains)."""
        self._tasks = [task for task in self._tasks if not task.done()]
        self._tasks += [
            asyncio.create_task(self._run(), name=f"eventstore-appender-{i}")
            for i in range(len(self._tasks), self._in_flight)
        ]

    async def close(self) -> None:
        """Stop appending. Every request not yet answered fails with StoreUnavailable, after
        its batch's server session has ended (one cut off mid-commit may still have been
        stored: the idempotency key makes a retry safe)."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        queued, self._queue = self._queue, []
        _settle(queued, StoreUnavailable("the event store is closed"))

    async def _run(self) -> None:
        # Several of these share the queue; the advisory lock orders their commits.
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            backend: int | None = None  # while the batch's statement is on the server
            try:
                async with self._pool.acquire() as conn:
                    backend = conn.get_server_pid()
                    await self._commit_isolating(conn, batch)
                    backend = None
            except asyncio.CancelledError:
                if backend is not None:
                    await self._stop_backend(backend)
                _settle(batch, StoreUnavailable("the event store is closed"))
                raise
            except Exception as error:  # the server is gone, or a bug
                _settle(batch, error if not unreachable(error) else _unavailable(error))
            else:
                _settle(batch, None)

    async def _stop_backend(self, pid: int) -> None:
        """End a cancelled batch's server session before its requests are told it failed.
        The pool drops the connection, but a backend waiting on the append lock notices
        its client is gone only when it answers, after committing: a request answered
        "unavailable" (retryable) would then have been appended after all."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_STOP_BACKEND_SECONDS), self._pool.acquire() as conn:
                await conn.execute("SELECT pg_terminate_backend($1, $2)", pid, int(_STOP_BACKEND_SECONDS * 1000))

    async def _commit_isolating(self, conn: asyncpg.Connection, batch: list[_Pending]) -> None:
        """Commit the batch; if PostgreSQL refuses it (data it cannot store, say), commit its
        halves apart until the request at fault is alone: it fails, the others are appended.
        One bad request in a batch of n costs ~2 log2(n) more transactions."""
        try:
            await self._commit(conn, batch)
        except (asyncpg.PostgresError, UnstorableData) as error:
            if unreachable(error):
                raise
            if len(batch) > 1:
                middle = len(batch) // 2
                await self._commit_isolating(conn, batch[:middle])
                await self._commit_isolating(conn, batch[middle:])
            elif isinstance(error, asyncpg.DataError):
                batch[0].error = UnstorableData(f"the input cannot be stored: {error.message[:200]}")
                batch[0].error.__cause__ = error
            else:
                batch[0].error = error  # UnstorableData already, or a bug: not the client's data

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
        try:
            payload = dumps(batch_json)
        except TypeError as error:  # orjson: a value JSON cannot hold (a lone surrogate)
            raise UnstorableData(f"the input cannot be stored: {str(error)[:200]}") from error
        started = time.perf_counter()
        rows = await conn.fetch(_APPEND, payload, self._outbox, NOTIFY_CHANNEL, APPEND_LOCK_KEY)
        seconds = time.perf_counter() - started
        for pending, row in zip(batch, rows, strict=True):
            pending.result, pending.error = _outcome(pending.request, row)
        if observing():
            APPEND_SECONDS.observe(seconds)
            for pending in batch:
                for event in pending.result.events if pending.result else ():
                    count_appended(event.type)


def _unavailable(error: Exception) -> StoreUnavailable:
    if isinstance(error, StoreUnavailable):
        return error
    unavailable = StoreUnavailable(f"the append failed: {error!r}")
    unavailable.__cause__ = error
    return unavailable


def _settle(batch: list[_Pending], error: Exception | None) -> None:
    """Answer every request of the batch: its own outcome if it has one, else `error`."""
    for pending in batch:
        if pending.future.done():
            continue
        if pending.result is not None:
            pending.future.set_result(pending.result)
        else:
            pending.future.set_exception(pending.error or error or StoreUnavailable("no outcome"))


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
