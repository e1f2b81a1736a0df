"""A Redis Streams consumer group member: read, react, acknowledge after commit, reclaim.

Reactions run concurrently across orders and in turn within an order (a
payment failure is never handled before the reservation it undoes), while the
consumer keeps reading (up to `max_inflight` reactions under way). A message
is acknowledged only once its reaction committed; one whose reaction failed
stays pending, and any member of the group reclaims it with XAUTOCLAIM once
it has been idle for `claim_idle` (its consumer died, or it failed here).

A message whose reaction keeps failing for a reason that retrying will not cure
(a bug, data the reaction cannot handle) would otherwise come back forever and
hold back its order's later messages. On its `max_deliveries`-th delivery it is
parked instead: copied, with the error, to the dead-letter stream
(`<stream>:dead-letter`) and acknowledged, in one MULTI; so is, at once, a
message that is not an event at all. Failures that look
transient (the database or Redis unreachable or restarting, a conflict, a
timeout) never park a message: it waits for the outage to end.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
import uuid

import asyncpg
import redis.asyncio as redis
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError, ResponseError

from eventstore import ConcurrencyConflict, RecordedEvent, StoreUnavailable
from eventstore.pool import DROPPED
from eventstore.tracing import continued
from eventstore.waiting import wait_set
from service import broker
from service.errors import TooMuchContention
from service.logs import CORRELATION_ID
from service.metrics import SAGA_MESSAGES
from service.saga.reactions import Reactions

log = logging.getLogger(__name__)

Message = tuple[bytes, dict[bytes, bytes]]
_TYPE_FIELD = broker.TYPE_FIELD.encode()

FORGET_AFTER = 3600.0  # seconds a member with nothing pending stays listed in its group
STOP_GRACE = 5.0  # seconds a stopping consumer gives the reactions under way
MAX_DELIVERIES = 5  # deliveries of a message failing for a permanent reason before it is parked
# Messages of types the group does not handle (most of them, for each group) are acknowledged
# together about once a second, not after each read: an acknowledgement costs a round trip
# whatever its size. Until then they are pending, far below `claim_idle`; if Redis fails
# first they stay pending, and are reclaimed and ignored again.
IGNORED_ACK_EVERY = 1.0  # seconds
IGNORED_ACK_COUNT = 1000

# Failures that retrying later cures: these never send a message to the dead letters.
TRANSIENT = (
    *DROPPED,
    OSError,
    TimeoutError,
    RedisError,
    StoreUnavailable,
    ConcurrencyConflict,
    TooMuchContention,
    asyncpg.TransactionRollbackError,  # serialization failure, deadlock
    asyncpg.InsufficientResourcesError,  # too many connections, disk full
)


def dead_letter_key(stream_key: str) -> str:
    return f"{stream_key}:dead-letter"


def consumer_name() -> str:
    """Unique per process start: a restarted process reclaims its old self's messages."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class StreamConsumer:
    def __init__(
        self,
        redis_client: redis.Redis,
        reactions: Reactions,
        *,
        stream_key: str = broker.STREAM_KEY,
        name: str | None = None,
        batch_size: int = 100,
        block_ms: int = 1000,
        claim_idle: float = 30.0,
        max_inflight: int = 200,
        max_deliveries: int = MAX_DELIVERIES,
    ) -> None:
        self._redis = redis_client
        self._reactions = reactions
        self.group = reactions.group
        self._handled_types = frozenset(t.encode() for t in reactions.handles)
        self.stream_key = stream_key
        self.name = name or consumer_name()
        self._batch = batch_size
        self._block_ms = block_ms
        self._claim_idle_ms = int(claim_idle * 1000)
        self._claim_every = max(claim_idle / 2, 0.1)
        self._max_deliveries = max_deliveries
        self.handled = 0  # messages acknowledged by this consumer
        self.dead_lettered = 0  # of which parked in the dead-letter stream
        self._slots = asyncio.Semaphore(max_inflight)
        self._inflight: set[asyncio.Task[bool]] = set()
        self._tails: dict[str, asyncio.Task[bool]] = {}  # per order: its latest reaction
        self._ignored: list[bytes] = []  # read, of types not handled: see IGNORED_ACK_EVERY

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.2
        try:
            while not stop.is_set():
                try:
                    await self._ensure_group()
                    await self._consume(stop)
                except Exception as error:  # Redis down or restarted empty, or a bug: start over
                    broker.honour_cancellation()
                    if isinstance(error, RedisError | OSError):
                        log.warning("%s consumer: %r; retrying in %.1f s", self.group, error, backoff)
                    else:
                        log.exception("%s consumer failed; retrying in %.1f s", self.group, backoff)
                    await wait_set(stop, backoff)
                    backoff = min(backoff * 2, 5.0)
                else:
                    backoff = 0.2
        except asyncio.CancelledError:
            self._abandon()  # killed: what was in flight stays pending for another member
            raise
        if self._inflight:  # stopped: let reactions under way finish, briefly
            await asyncio.wait(self._inflight, timeout=STOP_GRACE)
        self._abandon()

    def _abandon(self) -> None:
        for task in self._inflight:
            task.cancel()

    async def _ensure_group(self) -> None:
        try:
            # From the stream's start: events published before the group existed count too.
            await self._redis.xgroup_create(self.stream_key, self.group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _consume(self, stop: asyncio.Event) -> None:
        next_claim = next_ack = 0.0
        while not stop.is_set():
            broker.honour_cancellation()
            if time.monotonic() >= next_claim:
                await self.reclaim()
                await self.forget_idle_members()
                next_claim = time.monotonic() + self._claim_every
            reply: list[tuple[bytes, list[Message]]] | None = await self._redis.xreadgroup(  # type: ignore[assignment]
                self.group, self.name, {self.stream_key: ">"}, count=self._batch, block=self._block_ms
            )  # redis-py types the reply loosely
            for _stream, messages in reply or ():
                await self._dispatch(messages)
            if len(self._ignored) >= IGNORED_ACK_COUNT or (self._ignored and time.monotonic() >= next_ack):
                await self._ack(self._take_ignored())
                next_ack = time.monotonic() + IGNORED_ACK_EVERY
        if self._ignored:  # stopping: acknowledged now
            await self._ack(self._take_ignored())

    def _take_ignored(self) -> list[bytes]:
        ignored, self._ignored = self._ignored, []
        return ignored

    async def reclaim(self) -> int:
        """Take over messages left pending too long by any member; process them. How many."""
        start, total = "0-0", 0
        while True:
            reply = await self._redis.xautoclaim(
                self.stream_key, self.group, self.name, self._claim_idle_ms, start, count=self._batch
            )
            start, messages = reply[0], [m for m in reply[1] if m[1] is not None]
            if messages:
                log.info("%s reclaimed %d pending messages", self.group, len(messages))
                await self.process(messages)
                total += len(messages)
            if start in (b"0-0", "0-0"):
                return total

    async def forget_idle_members(self, idle: float = FORGET_AFTER) -> list[str]:
        """Drop members gone quiet with nothing pending (each process start adds one)."""
        forgotten = []
        for member in await self._redis.xinfo_consumers(self.stream_key, self.group):
            name = member["name"].decode() if isinstance(member["name"], bytes) else member["name"]
            if name != self.name and member["pending"] == 0 and member["idle"] >= idle * 1000:
                await self._redis.xgroup_delconsumer(self.stream_key, self.group, name)
                forgotten.append(name)
        return forgotten

    async def process(self, messages: list[Message]) -> None:
        """Handle `messages` and wait until each is acknowledged or left pending."""
        tasks = await self._dispatch(messages)
        if self._ignored:
            await self._ack(self._take_ignored())
        await asyncio.gather(*tasks)

    async def _dispatch(self, messages: list[Message]) -> list[asyncio.Task[bool]]:
        """Start a reaction per message, chained after the previous one of the same order,
        so orders proceed concurrently and each in its own order; returns at once unless
        `max_inflight` reactions are under way. Messages of types the group does not
        handle are left in `_ignored`, for the caller to acknowledge."""
        tasks = []
        ignored = self._ignored
        for message_id, fields in messages:
            type_ = fields.get(_TYPE_FIELD)
            if type_ is not None and type_ not in self._handled_types:  # no need to decode it
                ignored.append(message_id)
                continue
            try:
                event = self._decode(fields)
            except (ValueError, KeyError, TypeError) as error:  # no delivery will make it one
                await self._park(message_id, fields, error, after_deliveries=0)
                continue
            if event.type not in self._reactions.handles:
                ignored.append(message_id)
                continue
            key = str(event.data.get("order_id") or event.stream_id.removeprefix("order-"))
            await self._slots.acquire()
            task = asyncio.create_task(self._react(message_id, fields, event, self._tails.get(key)))
            self._tails[key] = task
            self._inflight.add(task)
            task.add_done_callback(functools.partial(self._finished, key))
            tasks.append(task)
        return tasks

    def _finished(self, key: str, task: asyncio.Task[bool]) -> None:
        self._inflight.discard(task)
        self._slots.release()
        if self._tails.get(key) is task:
            del self._tails[key]

    async def _react(
        self, message_id: bytes, fields: dict[bytes, bytes], event: RecordedEvent, after: asyncio.Task[bool] | None
    ) -> bool:
        """True once the reaction committed (or the message was parked) and it is acknowledged."""
        if after is not None:
            try:
                if not await after:
                    return False  # the order's earlier message stays pending: so does this one
            except asyncio.CancelledError:
                return False
        CORRELATION_ID.set(event.metadata.get("correlation_id"))  # this reaction's own task
        try:
            with continued(
                f"saga {self.group} {event.type}",
                event.metadata,
                kind=SpanKind.CONSUMER,
                attributes={"messaging.consumer.group.name": self.group, "eventgraph.event_type": event.type},
            ):
                first_time = await self._reactions.handle(event)
        except Exception as error:
            if not isinstance(error, TRANSIENT) and await self._park(
                message_id, fields, error, after_deliveries=self._max_deliveries
            ):
                return True
            SAGA_MESSAGES.labels(self.group, "failed").inc()
            log.exception("%s failed on %s (%s); it stays pending", self.group, event.type, message_id)
            return False
        SAGA_MESSAGES.labels(self.group, "processed" if first_time else "duplicate").inc()
        try:
            await self._ack([message_id])
        except RedisError as error:  # redelivered later, and absorbed then as already processed
            log.warning("%s could not acknowledge %s: %r", self.group, message_id, error)
            return False
        return True

    async def _park(
        self, message_id: bytes, fields: dict[bytes, bytes], error: Exception, *, after_deliveries: int
    ) -> bool:
        """Once a message has been delivered `after_deliveries` times, move it to the
        dead-letter stream with `error` and acknowledge it, atomically. True if parked."""
        try:
            pending = await self._redis.xpending_range(
                self.stream_key, self.group, min=message_id, max=message_id, count=1
            )
            deliveries = int(pending[0]["times_delivered"]) if pending else 0
            if deliveries < after_deliveries:
                return False
            parked = {
                **fields,
                b"group": self.group.encode(),
                b"message_id": message_id,
                b"deliveries": str(deliveries).encode(),
                b"error": f"{type(error).__name__}: {error}"[:2000].encode(),
            }
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xadd(dead_letter_key(self.stream_key), parked)  # type: ignore[arg-type]
                pipe.xack(self.stream_key, self.group, message_id)
                await pipe.execute()
        except RedisError as redis_error:  # it stays pending, and is parked on a later delivery
            log.warning("%s could not park %s: %r", self.group, message_id, redis_error)
            return False
        log.error(
            "%s parked %s in %s after %d deliveries: %r",
            self.group, message_id, dead_letter_key(self.stream_key), deliveries, error,
            exc_info=error,
        )
        self.handled += 1
        self.dead_lettered += 1
        SAGA_MESSAGES.labels(self.group, "dead_lettered").inc()
        return True

    async def _ack(self, message_ids: list[bytes]) -> None:
        await self._redis.xack(self.stream_key, self.group, *message_ids)
        self.handled += len(message_ids)

    @staticmethod
    def _decode(fields: dict[bytes, bytes]) -> RecordedEvent:
        payload = fields.get(broker.FIELD.encode())
        if payload is None:
            raise ValueError(f"no `{broker.FIELD}` field")
        return broker.decode(payload)
