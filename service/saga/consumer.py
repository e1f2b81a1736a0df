"""A Redis Streams consumer group member: read, react, acknowledge after commit, reclaim.

One group serves several contexts' reactions (the saga's three share one): each entry is
read, parsed and acknowledged once, not once per context. Reading an entry in a group
costs Redis about 5.5 µs and the process its parsing, so three groups cost three times
that for every event published, though each context handles only a few types (issue 18:
the groups' reads were the largest part of Redis's work under addItem load).

Reactions run concurrently across orders and in turn within an order (a
payment failure is never handled before the reservation it undoes), while the
consumer keeps reading (up to `max_inflight` messages under way). A message
is acknowledged only once every reaction to it committed; one whose reaction failed
stays pending, and any member of the group reclaims it with XAUTOCLAIM once
it has been idle for `claim_idle` (its consumer died, or it failed here). The
redelivery runs each reaction again: those that had committed find the message
processed (their tracking, service/saga/tracked.py) and change nothing.

The group replaces one group per context (each named after its context, as before
this change): created the first time, it starts after what every such group had
acknowledged, so no message any of them still owed is skipped, and those groups are
removed. (A process of the older version still running recreates its group from the
stream's start and reads it again; its reactions find each message processed.)

A message whose reaction keeps failing for a reason that retrying will not cure
(a bug, data the reaction cannot handle) would otherwise come back forever and
hold back its order's later messages. On its `max_deliveries`-th delivery it is
parked instead: copied, with the error, to the dead-letter stream
(`<stream>:dead-letter`) and acknowledged, in one MULTI; so is, at once, a
message that is not an event at all. Failures that look
transient (the database or Redis unreachable or restarting, a conflict, a
timeout) never park a message: it waits for the outage to end. Parking acknowledges a
message for every context of the group, so it waits too while any context's reaction to
it fails transiently; the dead letter names the contexts whose reactions failed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence

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
        reactions: Reactions | Sequence[Reactions],
        *,
        group: str | None = None,
        stream_key: str = broker.STREAM_KEY,
        name: str | None = None,
        batch_size: int = 100,
        block_ms: int = 1000,
        claim_idle: float = 30.0,
        max_inflight: int = 200,
        max_deliveries: int = MAX_DELIVERIES,
    ) -> None:
        self._redis = redis_client
        contexts = tuple(reactions) if isinstance(reactions, Sequence) else (reactions,)
        # A group of its own for one context (named after it); several share `group`.
        self.group = group or contexts[0].group
        self._reactions: dict[str, tuple[Reactions, ...]] = {  # by event type: who reacts to it
            t: tuple(r for r in contexts if t in r.handles) for r in contexts for t in r.handles
        }
        self._handled_types = frozenset(t.encode() for t in self._reactions)
        self._replaces = sorted({r.group for r in contexts} - {self.group})  # groups of one context each
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
            # From the stream's start (events published before the group existed count too),
            # or after what the groups it replaces had all acknowledged.
            await self._redis.xgroup_create(self.stream_key, self.group, id=await self._start(), mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        for old in self._replaces:  # gone once the group that replaces them exists
            if await self._redis.xgroup_destroy(self.stream_key, old):
                log.info("%s replaces the consumer group %s on %s", self.group, old, self.stream_key)

    async def _start(self) -> str:
        """The id a new group starts after: just before the first entry some group it
        replaces had not acknowledged (its first pending one, else its first unread); the
        stream's start if a context it serves has no group (it never read the stream)."""
        if not self._replaces:
            return "0"
        try:
            groups = {g["name"].decode(): g for g in await self._redis.xinfo_groups(self.stream_key)}
        except ResponseError:  # no stream yet
            return "0"
        if self.group in groups:
            return "0"  # BUSYGROUP follows
        starts = []
        for name in self._replaces:
            if (old := groups.get(name)) is None:
                return "0"  # a context that never read the stream: it owes from the start
            if old["pending"]:
                first_pending = (await self._redis.xpending(self.stream_key, name))["min"]
                starts.append(_just_before(first_pending))
            else:
                starts.append(_stream_id(old["last-delivered-id"]))
        ms, seq = min(starts)
        return f"{ms}-{seq}"

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
            reactions = self._reactions.get(event.type)
            if reactions is None:
                ignored.append(message_id)
                continue
            key = str(event.data.get("order_id") or event.stream_id.removeprefix("order-"))
            await self._slots.acquire()
            task = asyncio.create_task(self._react(message_id, fields, event, reactions, self._tails.get(key)))
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
        self,
        message_id: bytes,
        fields: dict[bytes, bytes],
        event: RecordedEvent,
        reactions: tuple[Reactions, ...],
        after: asyncio.Task[bool] | None,
    ) -> bool:
        """True once every reaction committed (or the message was parked) and it is acknowledged."""
        if after is not None:
            try:
                if not await after:
                    return False  # the order's earlier message stays pending: so does this one
            except asyncio.CancelledError:
                return False
        CORRELATION_ID.set(event.metadata.get("correlation_id"))  # this message's own task
        if len(reactions) == 1:
            failures = [f for f in [await self._react_once(reactions[0], event)] if f is not None]
        else:  # contexts apart: they run side by side (each in its own task and transaction)
            outcomes = await asyncio.gather(*(self._react_once(r, event) for r in reactions))
            failures = [f for f in outcomes if f is not None]
        if failures:
            # Parking acknowledges the message for every context: only when no failure is one
            # that retrying cures (that context would never get it again otherwise).
            if not any(isinstance(error, TRANSIENT) for _, error in failures) and await self._park(
                message_id, fields, failures[0][1], contexts=[c for c, _ in failures],
                after_deliveries=self._max_deliveries,
            ):
                return True
            for context, error in failures:
                SAGA_MESSAGES.labels(context, "failed").inc()
                log.error(
                    "%s failed on %s (%s); it stays pending", context, event.type, message_id, exc_info=error
                )
            return False
        try:
            await self._ack([message_id])
        except RedisError as error:  # redelivered later, and absorbed then as already processed
            log.warning("%s could not acknowledge %s: %r", self.group, message_id, error)
            return False
        return True

    async def _react_once(self, reactions: Reactions, event: RecordedEvent) -> tuple[str, Exception] | None:
        """One context's reaction; (its name, the error) if it failed."""
        context = reactions.group
        try:
            with continued(
                f"saga {context} {event.type}",
                event.metadata,
                kind=SpanKind.CONSUMER,
                attributes={"messaging.consumer.group.name": self.group, "eventgraph.event_type": event.type},
            ):
                first_time = await reactions.handle(event)
        except Exception as error:
            return context, error
        SAGA_MESSAGES.labels(context, "processed" if first_time else "duplicate").inc()
        return None

    async def _park(
        self,
        message_id: bytes,
        fields: dict[bytes, bytes],
        error: Exception,
        *,
        after_deliveries: int,
        contexts: Sequence[str] = (),
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
                **({b"context": ", ".join(contexts).encode()} if contexts else {}),  # whose reactions failed
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
            ", ".join(contexts) or self.group, message_id, dead_letter_key(self.stream_key), deliveries, error,
            exc_info=error,
        )
        self.handled += 1
        self.dead_lettered += 1
        for context in contexts or [self.group]:
            SAGA_MESSAGES.labels(context, "dead_lettered").inc()
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


def _stream_id(value: bytes | str) -> tuple[int, int]:
    ms, _, seq = (value.decode() if isinstance(value, bytes) else value).partition("-")
    return int(ms), int(seq or 0)


def _just_before(value: bytes | str) -> tuple[int, int]:
    """The greatest stream id below `value` (ids are <ms>-<seq>, each a 64-bit count)."""
    ms, seq = _stream_id(value)
    if seq:
        return ms, seq - 1
    return (ms - 1, 2**64 - 1) if ms else (0, 0)
