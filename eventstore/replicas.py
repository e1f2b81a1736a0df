"""Where read-only queries go: a streaming replica within the lag bound, else the primary.

A replica's lag is measured against the primary's WAL, not against its last replayed
transaction's timestamp (that one grows while the primary is idle): every check samples
the primary's flushed WAL position, and a replica whose replay position has reached
every sample is 0 s behind; otherwise it lacks WAL the primary had flushed at the
oldest sample past its replay position, and the lag is the time since that sample.
A replica more than `max_lag` seconds behind, or one that failed a query or a check,
gets no reads until a check finds it caught up again. So staleness is bounded by
`max_lag` plus one check interval.

A read that must see something a replica may lack (`enough`) waits briefly for one
that has it, then goes to the primary; a read pinned to one replica (`prefer`) that
fails goes to the primary too: the primary is always at least as far on.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from eventstore.errors import StoreUnavailable
from eventstore.pool import DROPPED, Pool, create_pool, fetch_read

log = logging.getLogger(__name__)

T = TypeVar("T")
Query = Callable[[Pool], Awaitable[T]]

CATCH_UP_WAIT = 0.05  # seconds a read waits for a replica to have what it must see
CATCH_UP_STEP = 0.005
CHECK_TIMEOUT = 1.0  # seconds a lag check may take before the replica counts as unreachable
# Seconds a read may take on a replica before it is left out and the read goes to the primary:
# a replica cut off by the network answers nothing at all (not even a reset).
REPLICA_READ_TIMEOUT = 5.0
SAMPLES_KEPT = 30.0  # seconds of the primary's WAL positions kept to date a replica's lag

# A replica that stopped, restarted, or cancelled our read to replay WAL (a recovery conflict);
# its pool reports a server it cannot reach as StoreUnavailable.
REPLICA_FAILED = (
    *DROPPED,
    OSError,
    TimeoutError,
    StoreUnavailable,
    asyncpg.CannotConnectNowError,
    asyncpg.SerializationError,
)

_PRIMARY_WAL = "SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::bigint"
_REPLAYED_WAL = "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint"  # NULL: not a standby


def replica_name(url: str) -> str:
    """host:port, for logs and the metric's label: never the user or the password."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


@dataclass(eq=False)
class Replica:
    name: str
    dsn: str
    pool: Pool
    lag: float = math.inf  # seconds behind the primary; inf: unreachable or not checked yet


class ReadPools:
    def __init__(
        self, primary: Pool, replicas: Sequence[Replica] = (), *, primary_dsn: str = "", max_lag: float = 2.0
    ) -> None:
        self.primary = primary
        self.replicas = list(replicas)
        self.max_lag = max_lag
        self._primary_dsn = primary_dsn
        # Checks use connections of their own: a busy read pool must not make a replica look
        # unreachable, and a check must not take a connection from the reads.
        self._probes: dict[str, asyncpg.Connection] = {}
        self._by_pool = {r.pool: r for r in self.replicas}
        self._samples: deque[tuple[float, int]] = deque()  # (when, the primary's flushed WAL)
        self._turn = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, primary: Pool, primary_dsn: str, urls: Sequence[str], *, pool_size: int, max_lag: float
    ) -> ReadPools:
        """Each replica gets its own pool (no connection until the first read: a replica
        that is down at startup only gets no reads), then one check, then one per interval."""
        replicas = [
            Replica(replica_name(url), url, await create_pool(url, min_size=0, max_size=pool_size))
            for url in urls
        ]
        reads = cls(primary, replicas, primary_dsn=primary_dsn, max_lag=max_lag)
        if replicas:
            await reads.check()
            reads._task = asyncio.get_running_loop().create_task(reads._watch(), name="replica-lag")
        return reads

    def usable(self) -> list[Pool]:
        """Replicas within the lag bound, taken in turns."""
        pools = [r.pool for r in self.replicas if r.lag <= self.max_lag]
        if len(pools) > 1:
            self._turn = (self._turn + 1) % len(pools)
            pools = pools[self._turn :] + pools[: self._turn]
        return pools

    def lags(self) -> dict[str, float]:
        return {r.name: r.lag for r in self.replicas}

    async def read(
        self, query: Query[T], *, enough: Callable[[T], bool] | None = None, prefer: Pool | None = None
    ) -> tuple[T, Pool]:
        """`query`'s answer and the pool that gave it: a usable replica's (or `prefer`'s)
        when it is `enough`, waiting up to CATCH_UP_WAIT for one; else the primary's."""
        replicas = self.usable() if prefer is None else [prefer] if prefer is not self.primary else []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CATCH_UP_WAIT
        while replicas:
            for pool in replicas:
                try:
                    async with asyncio.timeout(REPLICA_READ_TIMEOUT):
                        answer = await query(pool)
                except REPLICA_FAILED as error:
                    self._failed(pool, error)
                    continue
                if enough is None or enough(answer):
                    return answer, pool
            if enough is None or loop.time() >= deadline:
                break
            await asyncio.sleep(CATCH_UP_STEP)
            replicas = [p for p in replicas if self._by_pool[p].lag <= self.max_lag]
        return await query(self.primary), self.primary

    async def fetch(self, sql: str, *args: Any, prefer: Pool | None = None) -> list[asyncpg.Record]:
        rows, _ = await self.read(lambda pool: fetch_read(pool, sql, *args), prefer=prefer)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return row[0] if row is not None else None

    def _failed(self, pool: Pool, error: BaseException) -> None:
        replica = self._by_pool[pool]
        if replica.lag != math.inf:
            log.warning("replica %s failed a read (%r): no reads until it answers again", replica.name, error)
        replica.lag = math.inf
        pool.expire_connections()

    async def check(self) -> None:
        """Measure every replica's lag now."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                flushed = int(await self._probe(self._primary_dsn, _PRIMARY_WAL))
        except Exception as error:  # the primary away: lags stay as they were
            log.warning("replica lag: the primary's WAL position could not be read (%r)", error)
            return
        now = loop.time()
        self._samples.append((now, flushed))
        while self._samples and self._samples[0][0] < now - SAMPLES_KEPT:
            self._samples.popleft()
        await asyncio.gather(*(self._check(replica) for replica in self.replicas))

    async def _check(self, replica: Replica) -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                replayed = await self._probe(replica.dsn, _REPLAYED_WAL)
        except Exception as error:
            if replica.lag != math.inf:
                log.warning("replica %s unreachable (%r): no reads until it answers", replica.name, error)
            replica.lag = math.inf
            replica.pool.expire_connections()
            return
        lag = self._lag(replayed)
        if lag <= self.max_lag < replica.lag:
            log.info("replica %s is %.3f s behind: it takes reads", replica.name, lag)
        replica.lag = lag

    async def _probe(self, dsn: str, sql: str) -> Any:
        conn = self._probes.get(dsn)
        try:
            if conn is None or conn.is_closed():
                conn = self._probes[dsn] = await asyncpg.connect(dsn)
            return await conn.fetchval(sql)
        except BaseException:
            if conn is not None:
                conn.terminate()
            self._probes.pop(dsn, None)
            raise

    def _lag(self, replayed: int | None) -> float:
        if replayed is None:  # not in recovery: a primary named as a replica is never behind
            return 0.0
        now = asyncio.get_running_loop().time()
        for when, flushed in self._samples:
            if flushed > replayed:
                return now - when
        return 0.0

    def _interval(self) -> float:
        return min(0.5, max(self.max_lag / 4, 0.05))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval())
            try:
                await self.check()
            except Exception as error:  # never die: the next check tries again
                log.warning("replica lag check failed: %r", error)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        probes, self._probes = list(self._probes.values()), {}
        await asyncio.gather(
            *(r.pool.close() for r in self.replicas), *(p.close(timeout=5) for p in probes), return_exceptions=True
        )


def read_pools(source: Pool | ReadPools) -> ReadPools:
    """Reads over `source`: a plain pool reads everything from itself."""
    return source if isinstance(source, ReadPools) else ReadPools(source)
