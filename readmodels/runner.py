"""Following the global log: each projection applies batches from its checkpoint.

One batch's writes are one transaction: lock the checkpoint row (still where the
batch was read from), apply the events, move the checkpoint. A crash anywhere
before the commit leaves no trace, and the next attempt starts from the same
checkpoint.

Under load a batch's fixed cost (its round trips, below) would be paid for every append
a NOTIFY announces. So after a batch that moved the checkpoint, a follower woken again
waits `gather` more before the next, letting the events of those milliseconds share one
batch (GATHERING): 10 ms after a quiet spell, doubling while appends keep committing
during the batches, up to 40 ms (eventstore.waiting.Gathering). An idle projection's
first event is not delayed; under sustained load read-your-writes waits up to 40 ms
longer, and each batch's fixed cost is shared by about four times as many events.

ROUND TRIPS. A batch is read before its transaction opens (positions up to the head
never change) and written in a transaction that locks the checkpoint and finds it where
the read started. The read is one statement with the checkpoint and the head, and when
the batch holds none of the projection's types it also moves the checkpoint (a
compare-and-set) and queues its notice. So a follower with nothing new, or with a batch
of none of its types (the wallets projection while orders are edited), pays one
statement and no transaction, and a batch to apply five plus the projection's own. Under
addItem load a round trip costs the process some 50 µs of CPU: the products and wallets
followers' three each per batch were a third of the projections' statements (issue 18).

In a process, `ProjectionRunner` keeps one task per projection. A task
first takes the projection's lease, when the runner's share allows it (see
readmodels/leases.py: the leases spread over the live processes); without
it, it retries every second, so when the holder dies another process takes
over within about two seconds. With it, the task catches up and then waits
for the event store's NOTIFY, polling as a fallback. A batch that fails (a
bug, a poison event) is rolled back, its error recorded on the checkpoint,
and retried after a pause: the projection stops at its checkpoint and never
skips an event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from eventstore import NOTIFY_CHANNEL, UpcasterRegistry
from eventstore.pool import connect
from eventstore.tracing import TRACEPARENT, continued, recording
from eventstore.waiting import Gathering, honour_cancellation
from readmodels.checkpoints import (
    advance,
    ensure_checkpoint,
    lock_checkpoint,
    record_error,
    try_lease,
)
from readmodels.leases import PROCESS, RUNNER_ROLE, LeaseShare, lease_holdings, name_session
from readmodels.log import Step, read_batch, step_from_checkpoint
from readmodels.notices import Notices
from readmodels.projection import LogEvent, Projection

log = logging.getLogger(__name__)


async def projection_connection(dsn: str) -> asyncpg.Connection:
    """A connection to apply batches on, planning each statement for its own arguments.

    A batch's statements take arrays of ids, against tables that grow under them (a
    rebuild's shadow starts empty, without statistics). After five executions
    PostgreSQL may switch a prepared statement to a generic plan; the one it chose for
    loading a batch's orders scanned the whole table each time (a rebuild in batches
    of 1,000: 6,400 events/s with it, 13,000 without). Planning costs microseconds a
    batch."""
    conn = await connect(dsn)
    await conn.execute("SET plan_cache_mode = force_custom_plan")
    return conn


@dataclass(frozen=True)
class Batch:
    events: int  # events applied
    before: int  # the checkpoint before
    after: int  # the checkpoint after (positions scanned, not only applied)
    head: int  # the log's head when read

    @property
    def more(self) -> bool:
        return self.after < self.head


class Follower:
    """A projection and the stored type names it reads; applies one batch at a time."""

    def __init__(self, projection: Projection, upcasters: UpcasterRegistry) -> None:
        self.projection = projection
        self._upcasters = upcasters
        self._stored_types = sorted(
            {s for t in projection.event_types for s in upcasters.stored_types(t)}
        )

    @property
    def checkpoint(self) -> str:
        return self.projection.checkpoint

    async def step(self, conn: asyncpg.Connection, limit: int) -> Batch:
        """One batch: read it, then apply it in a transaction that finds the checkpoint
        still where the read started (else nothing is written: the caller reads again).

        See ROUND TRIPS: nothing new, or a batch with none of the projection's events (most
        batches of the projections not in the load), costs one statement, without a
        transaction."""
        traceparents: list[str] | None = [] if recording() else None
        read = await self.read_from_checkpoint(conn, limit, traceparents)
        before, head = read.before, read.head
        if not read.events:
            return Batch(0, before, read.upto if read.moved else before, head)
        if not await self._commit(conn, read.events, before, read.upto, traceparents):
            return Batch(0, before, before, head)  # a rebuild swapped it meanwhile
        return Batch(len(read.events), before, read.upto, head)

    async def read_from_checkpoint(
        self, conn: asyncpg.Connection, limit: int, traceparents: list[str] | None = None
    ) -> Step:
        """The next batch after the checkpoint; the checkpoint moved past it if it has none."""
        return await step_from_checkpoint(
            conn, self._upcasters, self._stored_types, self.checkpoint, limit, traceparents
        )

    async def step_in_transaction(self, conn: asyncpg.Connection, limit: int) -> Batch:
        before = await lock_checkpoint(conn, self.checkpoint)
        traceparents: list[str] | None = [] if recording() else None
        events, after, head = await self.read(conn, before, limit, traceparents=traceparents)
        if after > before:
            await self._apply(conn, events, after, traceparents)
        return Batch(len(events), before, after, head)

    async def _apply(
        self, conn: asyncpg.Connection, events: Sequence[LogEvent], after: int, traceparents: list[str] | None
    ) -> None:
        """In the transaction that locked the checkpoint: the projection's writes, then the
        checkpoint moved past the batch."""
        await self.projection.apply(conn, events)
        await advance(conn, self.checkpoint, after)
        for traceparent in traceparents or ():  # a span in the trace of each sampled event
            with continued(f"projection {self.projection.name}", {TRACEPARENT: traceparent}):
                pass

    async def read(
        self,
        conn: asyncpg.Connection,
        after: int,
        limit: int,
        head: int | None = None,
        traceparents: list[str] | None = None,
    ) -> tuple[list[LogEvent], int, int]:
        """A batch after `after` (any connection will do: positions up to the head never change)."""
        return await read_batch(conn, self._upcasters, self._stored_types, after, limit, head, traceparents)

    async def write(
        self, conn: asyncpg.Connection, events: Sequence[LogEvent], before: int, after: int
    ) -> None:
        """Apply a batch read ahead; refused if the checkpoint is no longer at `before`."""
        if not await self._commit(conn, events, before, after):
            raise RuntimeError(f"{self.checkpoint} moved while a batch was read ahead")

    async def _commit(
        self,
        conn: asyncpg.Connection,
        events: Sequence[LogEvent],
        before: int,
        after: int,
        traceparents: list[str] | None = None,
    ) -> bool:
        """Apply a batch read outside a transaction in one, if the checkpoint is still at `before`."""
        try:
            async with conn.transaction():
                if await lock_checkpoint(conn, self.checkpoint) != before:
                    self.projection.forget()  # a rebuild swapped the tables, or another writer
                    return False
                await self._apply(conn, events, after, traceparents)
        except BaseException:
            self.projection.forget()  # rolled back, or not known to have committed
            raise
        self.projection.committed()
        return True


class ProjectionRunner:
    def __init__(
        self,
        dsn: str,
        projections: Sequence[Projection],
        upcasters: UpcasterRegistry,
        notices: Notices,
        *,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        lease_retry: float = 1.0,
        failure_pause: float = 5.0,
        gather: tuple[float, float] = (0.01, 0.04),
        process: str = PROCESS,
    ) -> None:
        self._dsn = dsn
        self._followers = [Follower(p, upcasters) for p in projections]
        self._notices = notices
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._lease_retry = lease_retry
        self._failure_pause = failure_pause
        self._gather = gather
        self.leased: set[str] = set()  # checkpoints this runner holds the lease of
        self._process = process  # "<host>:<pid>": names this runner's sessions
        self._share = LeaseShare(process, len(self._followers))
        self._taking = asyncio.Lock()  # one follower at a time decides on the count
        self._giving_back: set[str] = set()
        self._shares_read = asyncio.Event()  # replaced by a new one after each round

    async def run(self, stop: asyncio.Event) -> None:
        """Follow every projection until `stop` is set."""
        tasks = [
            asyncio.create_task(self._follow(f, stop), name=f"projection-{f.checkpoint}")
            for f in self._followers
        ]
        tasks.append(asyncio.create_task(self._balance(stop), name="projection-leases"))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, follower: Follower, stop: asyncio.Event) -> None:
        name = follower.checkpoint
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await projection_connection(self._dsn)
                await name_session(conn, RUNNER_ROLE, self._process)
                rounds = 0
                while not await self._take(conn, name, rounds):  # a standby: held, or not ours to take
                    rounds += 1
                    await _pause(stop, self._shares_read, self._lease_retry)
                    if stop.is_set():
                        return
                log.info("projection %s: lease taken", name)
                await ensure_checkpoint(conn, name)
                await self._drive(conn, follower, stop)
            except Exception as error:  # lost connection, server restart: start over, lease first
                honour_cancellation()
                log.warning("projection %s: %r; retrying", name, error)
                await _pause(stop, None, self._lease_retry)
            finally:
                self.leased.discard(name)
                self._giving_back.discard(name)
                follower.projection.forget()  # another process may write its tables now
                if conn is not None:
                    conn.terminate()  # releases the lease; an open batch rolls back

    async def _take(self, conn: asyncpg.Connection, name: str, rounds_waited: int) -> bool:
        async with self._taking:
            if not self._share.may_take(len(self.leased), rounds_waited) or not await try_lease(conn, name):
                return False
            self.leased.add(name)
            return True

    async def _balance(self, stop: asyncio.Event) -> None:
        """Every `lease_retry`: read who holds what; give a lease back when this runner
        holds more than its share (a process joined)."""
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self._dsn)
                await name_session(conn, RUNNER_ROLE, self._process)
                while not stop.is_set():
                    give_back = self._share.refresh(await lease_holdings(conn), len(self.leased))
                    if give_back and (kept := sorted(self.leased - self._giving_back)):
                        name = kept[-1]
                        log.info("projection %s: giving the lease back (share: %d)", name, self._share.share)
                        self._giving_back.add(name)
                    self._shares_read.set()
                    self._shares_read = asyncio.Event()
                    await _pause(stop, None, self._lease_retry)
            except Exception as error:  # lost connection, server restart: the shares wait
                log.warning("projection leases: %r; retrying", error)
                await _pause(stop, None, self._lease_retry)
            finally:
                if conn is not None:
                    conn.terminate()

    async def _drive(self, conn: asyncpg.Connection, follower: Follower, stop: asyncio.Event) -> None:
        name = follower.checkpoint
        gathering = Gathering(*self._gather)
        while not stop.is_set() and name not in self._giving_back:
            wakeup = self._notices.next(NOTIFY_CHANNEL)
            try:
                batch = await follower.step(conn, self._batch_size)
            except Exception as error:
                if conn.is_closed():
                    raise asyncpg.InterfaceError(f"lost the connection: {error!r}") from error
                log.exception("projection %s stopped at its checkpoint; retrying later", name)
                await record_error(conn, name, f"{type(error).__name__}: {error}")
                await _pause(stop, None, self._failure_pause)
                continue
            if batch.events:
                log.debug("projection %s: %d events to %d", name, batch.events, batch.after)
            if not batch.more:
                busy = wakeup.is_set()  # something committed while the batch was under way
                await _pause(stop, wakeup, self._poll_interval)
                if batch.after > batch.before:  # under load: see GATHERING
                    await _pause(stop, None, gathering.after_batch(busy))


async def _pause(stop: asyncio.Event, wakeup: asyncio.Event | None, seconds: float) -> None:
    """Sleep until `seconds` pass, `stop` is set or `wakeup` fires."""
    waiters = [asyncio.create_task(stop.wait())]
    if wakeup is not None:
        waiters.append(asyncio.create_task(wakeup.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
