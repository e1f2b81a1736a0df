"""The outbox relay: publishes committed events to Redis Streams, in position order.

One relay at a time does the work: each holds a session advisory lock (the
lease) on its own connection while it publishes, and the others wait to take
over, so entries go out in position order and, in normal operation, once. A
batch is read after the last position marked published, published, then marked
(one row for the batch, eventstore/outbox.py); a relay that dies in between leaves
it unmarked and the next leader publishes it again (at least once: consumers
deduplicate by `event_id`). A relay that lost its lease has lost its connection
with it, so it can mark nothing more.
While Redis is down nothing is marked, the outbox grows and the relay retries
with backoff; appends never wait for the broker.

A Redis that comes back without its data (or with an older snapshot) lost entries
the outbox marks published. Each publish also records, in the same script and so in
the same snapshot, the highest position the stream holds (`<stream>:published-through`);
when that is below what the outbox marks published, the relay marks unpublished again
every row after the position the consumer groups had acknowledged when it last looked
(every `observe_interval` while the stream was intact; every retained row if it never
did), and publishes them again in order. Consumers' processed-message records absorb
what they had already handled.

Under load each commit's NOTIFY would make a batch of one or two events, each paying a
transaction, a script call and the consumers' reads. After a batch, a relay woken again
waits `gather` more, so the events of those milliseconds go out together: 5 ms after a
quiet spell, doubling while appends keep committing during the publishes, up to 20 ms
(eventstore.waiting.Gathering). A quiet relay's first event is not delayed; under
sustained load an event reaches the broker up to 20 ms later.

The relay's connection commits without waiting for the WAL flush (synchronous_commit
off for its session): its writes are marks, purges and unmarks that a server crash may
only lose, and a lost mark means publishing again (at least once), a lost purge purging
later, a lost unmark another StreamLost at the next publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg
import orjson
import redis.asyncio as redis
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError

from eventstore import NOTIFY_CHANNEL, UpcasterRegistry
from eventstore.outbox import (
    mark_published,
    published_through,
    purge_published,
    republish_after,
    unpublished,
)
from eventstore.tracing import TRACEPARENT, continued, recording, sampled
from eventstore.tracking import purge_processed
from eventstore.waiting import Gathering, wait_set
from readmodels.leases import name_session
from readmodels.notices import Notices
from service import broker
from service.broker_progress import needed_after
from service.container import Services, build_upcasters
from service.metrics import OUTBOX_PUBLISHED

log = logging.getLogger(__name__)

RELAY_LOCK_KEY = 0x6576_6E74_7265  # the relays' lease ("evntre")
DAY = 24 * 3600.0

# KEYS[1] the stream, KEYS[2] the highest position it holds. ARGV[1] > 0: trim to about that
# length; ARGV[2] the payload's field, ARGV[3] the type's; ARGV[4] the position the stream
# must hold through, else it lost entries: publish nothing, return -1; ARGV[5] the last
# position of the (payload, type) pairs ARGV[6..].
_XADD_ALL = """
local held = redis.call('GET', KEYS[2])
if not held and redis.call('XLEN', KEYS[1]) > 0 then
  held = ARGV[4]  -- published before there was a marker (an upgrade): the stream is as it was
  redis.call('SET', KEYS[2], held)
end
held = tonumber(held or '0')
if held < tonumber(ARGV[4]) then
  return -1
end
local maxlen = tonumber(ARGV[1])
for i = 6, #ARGV, 2 do
  if maxlen > 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', ARGV[2], ARGV[i], ARGV[3], ARGV[i + 1])
  else
    redis.call('XADD', KEYS[1], '*', ARGV[2], ARGV[i], ARGV[3], ARGV[i + 1])
  end
end
if tonumber(ARGV[5]) > held then
  redis.call('SET', KEYS[2], ARGV[5])
end
return (#ARGV - 5) / 2
"""


def published_through_key(stream_key: str) -> str:
    return f"{stream_key}:published-through"


class StreamLost(Exception):
    """The broker stream no longer holds entries the outbox marks published."""


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        redis_client: redis.Redis,
        upcasters: UpcasterRegistry,
        *,
        stream_key: str = broker.STREAM_KEY,
        batch_size: int = 2000,
        retention_days: float = 7.0,
        poll_interval: float = 1.0,
        purge_interval: float = 60.0,
        max_stream_length: int | None = 1_000_000,
        observe_interval: float = 5.0,
        gather: tuple[float, float] = (0.005, 0.02),
        notices: Notices | None = None,
    ) -> None:
        self._dsn = dsn
        self._redis = redis_client
        self._upcasters = upcasters
        self.stream_key = stream_key
        self._batch_size = batch_size
        self._retention = retention_days * DAY
        self._poll = poll_interval
        self._purge_interval = purge_interval
        # Trimmed approximately; a consumer group lagging that far behind loses the oldest.
        self._maxlen = max_stream_length
        self._xadd_all = redis_client.register_script(_XADD_ALL)
        self._marker = published_through_key(stream_key)
        self._observe_interval = observe_interval
        self._gather = gather
        self._next_observation = 0.0
        self._published_through = 0  # the highest position the outbox marks published
        self.needed_after: int | None = None  # the consumer groups had acknowledged through here (None: unknown)
        self._wakeup = asyncio.Event()
        # Woken by the process's LISTEN connection when there is one (`serve`): each commit's
        # notification is then delivered to the process once, not twice.
        self._notices = notices
        if notices is not None:
            notices.on(NOTIFY_CHANNEL, self._notified)
        self.is_leader = False
        self.published = 0  # entries this relay has published (for tests and logs)
        self.republished = 0  # entries marked unpublished again after the broker lost them

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: wait for the lease, then publish; survive database and Redis outages."""
        backoff = 0.2
        standing_by = False
        while not stop.is_set():
            try:
                conn = await asyncpg.connect(self._dsn)
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("relay cannot reach the database: %r", error)
                await _sleep(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            try:
                await name_session(conn, "relay")  # who publishes shows in pg_stat_activity
                await conn.execute("SET synchronous_commit = off")  # see the module's docstring
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY):
                    await self._lead(conn, stop)
                else:
                    if not standing_by:
                        log.info("outbox relay standing by: another process publishes")
                        standing_by = True
                    await _sleep(stop, self._poll)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                broker.honour_cancellation()
                log.warning("relay lost its database connection: %r", error)
            except Exception:  # a bug or an odd failure: say so, start over from the table
                broker.honour_cancellation()
                log.exception("outbox relay failed; starting over")
                await _sleep(stop, 1.0)
            finally:
                self.is_leader = False
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await conn.close()

    async def _lead(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        self.is_leader = True
        log.info("outbox relay is publishing to %s", self.stream_key)
        if self._notices is None:
            await conn.add_listener(NOTIFY_CHANNEL, self._notified)
        else:
            self._notices.start()
        self._published_through = await published_through(conn)
        next_purge = 0.0
        redis_down = 0.0
        gathering = Gathering(*self._gather)
        while not stop.is_set():
            self._wakeup.clear()
            try:
                count = await self.publish_batch(conn)
                busy = self._wakeup.is_set()  # something committed while the batch went out
                if count < self._batch_size:
                    await self._watch(count == 0)
            except StreamLost:
                await self._republish(conn)
                continue
            except RedisError as error:
                broker.honour_cancellation()
                redis_down = min(max(redis_down * 2, 0.2), 5.0)
                log.warning("Redis unavailable (%r); retrying in %.1f s", error, redis_down)
                await _sleep(stop, redis_down)
                continue
            if redis_down:
                log.info("Redis is back; the relay is draining the outbox")
                redis_down = 0.0
            if count == self._batch_size:
                continue  # more waiting: no pause
            if time.monotonic() >= next_purge:
                await self.apply_retention(conn)
                next_purge = time.monotonic() + self._purge_interval
            await _wait(stop, self._wakeup, self._poll)
            if count:  # under load: the next few milliseconds' events share the next batch
                await _sleep(stop, gathering.after_batch(busy))

    async def apply_retention(self, conn: asyncpg.Connection) -> None:
        """Published outbox rows, and consumers' processed-message records, past the retention
        go (the relay's lease makes one process do it)."""
        purged = await purge_published(conn, self._retention)
        forgotten = await purge_processed(conn, self._retention)
        if purged or forgotten:
            log.info("retention: %d published outbox rows, %d processed-message records", purged, forgotten)

    async def _watch(self, idle: bool) -> None:
        """Check the stream still holds what was published (a publish checks it too), and
        now and then note how far the consumer groups have got."""
        if idle:
            await self._verify()
        if time.monotonic() < self._next_observation:
            return
        needed = await needed_after(self._redis, self.stream_key, self._published_through)
        await self._verify()  # observed on the intact stream, not on one emptied meanwhile
        self.needed_after = needed
        self._next_observation = time.monotonic() + self._observe_interval

    async def _verify(self) -> None:
        if not await self._publish([], 0):
            raise StreamLost

    async def _republish(self, conn: asyncpg.Connection) -> None:
        """The broker lost entries: publish again every retained row after what the groups
        had acknowledged (processed-message records absorb the repeats)."""
        after = self.needed_after or 0
        lost_through = self._published_through
        count = await republish_after(conn, after)
        self._published_through = await published_through(conn)
        await self._redis.set(self._marker, self._published_through)
        self.republished += count
        log.warning(
            "broker stream %s lost entries published through position %d: publishing again the %d events "
            "after position %d%s",
            self.stream_key, lost_through, count, after,
            " (what the consumer groups had processed was never observed)" if self.needed_after is None
            else ", which some consumer group had not acknowledged",
        )

    def _notified(self, *_: object) -> None:
        self._wakeup.set()

    async def publish_batch(self, conn: asyncpg.Connection) -> int:
        """Publish and mark one batch of unpublished entries; how many. No transaction: the
        lease makes this relay the only one reading and marking (eventstore/outbox.py)."""
        entries = await unpublished(conn, self._published_through, self._batch_size)
        if not entries:
            return 0
        payloads = [part for e in entries for part in broker.encode(e, self._upcasters)]
        if not await self._publish(payloads, entries[-1].position):
            raise StreamLost
        await mark_published(conn, entries[-1].position)
        self.published += len(entries)
        self._published_through = entries[-1].position
        OUTBOX_PUBLISHED.inc(len(entries))
        if recording():
            for entry in entries:
                metadata = orjson.loads(entry.payload)["metadata"] if TRACEPARENT in entry.payload else {}
                if sampled(metadata.get(TRACEPARENT)):
                    with continued(f"{self.stream_key} publish", metadata, kind=SpanKind.PRODUCER):
                        pass
        return len(entries)

    async def _publish(self, payloads: list[bytes | str], through: int) -> bool:
        """Publish `payloads`, (JSON, type) pairs flattened, the last at position `through`;
        False, publishing nothing, if the stream lost entries published before."""
        # One script call per batch: a fifth of a pipeline's cost, and all-or-none in Redis.
        args: list[bytes | str | int] = [
            self._maxlen or 0, broker.FIELD, broker.TYPE_FIELD, self._published_through, through, *payloads
        ]
        return int(await self._xadd_all(keys=[self.stream_key, self._marker], args=args)) >= 0


async def relay_worker(services: Services, stop: asyncio.Event) -> None:
    """The relay inside `serve` (and `eventgraph relay`): off, and says so, without Redis."""
    settings = services.settings
    if not settings.redis_url:
        log.warning("outbox relay off: no REDIS_URL and no embedded Redis; events stay in the outbox")
        return
    client = broker.redis_client(settings.redis_url)
    try:
        relay = OutboxRelay(
            services.dsn,
            client,
            build_upcasters(),
            stream_key=settings.broker_stream,
            retention_days=settings.outbox_retention_days,
            notices=services.read_models.notices,
        )
        await relay.run(stop)
    finally:
        await client.aclose()


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    await wait_set(stop, seconds)


async def _wait(stop: asyncio.Event, wakeup: asyncio.Event, seconds: float) -> None:
    """Until `wakeup` or `stop` is set, or `seconds` pass."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wakeup.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
