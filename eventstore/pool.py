"""Connections and a pool of them, with the store's JSON codec."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import orjson

from compat.asyncpg import is_cancelling
from eventstore.errors import StoreUnavailable
from eventstore.outage import Outage


def _default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _encode(value: Any) -> str:
    return orjson.dumps(value, default=_default).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("jsonb", "json"):
        await conn.set_type_codec(name, encoder=_encode, decoder=orjson.loads, schema="pg_catalog")


Init = Callable[[asyncpg.Connection], Awaitable[None]]


class Pool:
    """A small pool of asyncpg connections.

    asyncpg's pool spends ~85 µs of CPU per query here on bookkeeping (a shielded task
    and a timer per release, a reset round trip), as much as a point query itself, and
    the read path makes one per request. This one keeps idle connections on a stack and
    hands a released one straight to the longest waiter; a timer runs only while a caller
    waits or connects. No reset on release: pooled connections never hold session state
    here (LISTEN and session advisory locks use dedicated connections, `connect`); a
    connection released inside a transaction is rolled back, and one that failed, timed
    out or was cancelled mid-query is dropped.

    Slots are exact whatever state a connection dies in: dropping one accounts for its slot
    before anything else (nothing after that may raise). A caller waits at most
    `acquire_timeout` seconds for a connection; every failure to get one, and a connection
    the server cut while in use, leaves as StoreUnavailable and is noted on `outage`.
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int,
        max_size: int,
        init: Init,
        acquire_timeout: float = 5.0,
        outage: Outage | None = None,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError("need 0 <= min_size <= max_size and max_size >= 1")
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._init = init
        self._acquire_timeout = acquire_timeout
        self.outage = outage or Outage("database")
        self._idle: list[asyncpg.Connection] = []
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._size = 0  # connections open or opening
        self._generation = 0  # connections of an older one are dropped, not reused
        self._born: dict[asyncpg.Connection, int] = {}  # every open connection: its generation
        self._closing = False
        self._closes: set[asyncio.Task[None]] = set()  # polite closes under way (kept referenced)

    async def open(self) -> None:
        connections = await asyncio.gather(*(self._connect() for _ in range(self._min_size)))
        for conn in connections:
            self._put(conn)

    @property
    def size(self) -> int:
        """Connections open or opening: never more than max_size."""
        return self._size

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def busy(self) -> int:
        """Connections held by callers (or being opened for one)."""
        return self._size - len(self._idle)

    @property
    def waiting(self) -> int:
        """Callers waiting for a connection."""
        return len(self._waiters)

    def acquire(self) -> _Acquired:
        return _Acquired(self)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as conn:
            return await conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any, column: int = 0) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args, column=column)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as conn:
            return await conn.execute(query, *args)

    def expire_connections(self) -> None:
        """Open fresh connections from now on (the server restarted, or dropped one of ours)."""
        self._generation += 1
        idle, self._idle = self._idle, []
        for conn in idle:
            self._discard(conn)

    async def close(self) -> None:
        """Close idle connections now, busy ones as they come back; waiters get an error."""
        self._closing = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self._size -= 1
            self._born.pop(conn, None)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(asyncpg.InterfaceError("the pool is closed"))
        closes = [*(conn.close(timeout=5) for conn in idle), *self._closes]
        await asyncio.gather(*closes, return_exceptions=True)

    async def _get(self) -> asyncpg.Connection:
        conn = self._take_idle()
        if conn is not None:
            return conn
        try:
            async with asyncio.timeout(self._acquire_timeout):
                return await self._wait_or_connect()
        except TimeoutError:
            reason = f"no database connection within {self._acquire_timeout:g} s"
            self.outage.started(reason)
            raise StoreUnavailable(reason) from None

    def _take_idle(self) -> asyncpg.Connection | None:
        if self._closing:
            raise asyncpg.InterfaceError("the pool is closed")
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
            self._forget(conn)  # the server went away while it idled
        return None

    async def _wait_or_connect(self) -> asyncpg.Connection:
        while True:
            conn = self._take_idle()
            if conn is not None:
                return conn
            if self._size < self._max_size:
                return await self._connect()
            waiter: asyncio.Future[asyncpg.Connection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                conn = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self._put(waiter.result())  # handed over just as we gave up: pass it on
                raise
            if conn is not None:
                return conn
            # None: a slot was freed (a connection was dropped); go round and open one

    async def _connect(self) -> asyncpg.Connection:
        self._size += 1
        try:
            conn = await asyncpg.connect(self._dsn)
            try:
                await self._init(conn)
            except BaseException:
                conn.terminate()
                raise
        except BaseException as error:
            self._size -= 1
            self._hand_over(None)
            if isinstance(error, Exception):  # refused, restarting, unknown database, ...
                self.outage.started(f"cannot connect: {error!r}")
                raise StoreUnavailable(f"cannot connect to the database: {error!r}") from error
            raise
        self._born[conn] = self._generation
        self.outage.ended()
        return conn

    async def _release(self, conn: asyncpg.Connection, failed: BaseException | None) -> None:
        try:
            reusable = not (
                self._closing
                or conn.is_closed()
                or self._born.get(conn) != self._generation
                or isinstance(failed, asyncio.CancelledError | TimeoutError)
                or is_cancelling(conn)
            )
        except Exception:  # a connection in a state we cannot even ask about
            reusable = False
        if not reusable:
            self._discard(conn)
            return
        if failed is None or not unreachable(failed):
            self.outage.ended()  # it answered
        if conn.is_in_transaction():
            try:
                await conn.execute("ROLLBACK")
            except BaseException as error:
                self._discard(conn)
                if not isinstance(error, Exception):
                    raise  # cancelled: the caller's outcome stands either way
                return
        self._put(conn)

    def _put(self, conn: asyncpg.Connection) -> None:
        if not self._hand_over(conn):
            self._idle.append(conn)

    def _hand_over(self, conn: asyncpg.Connection | None) -> bool:
        """Give the longest waiter a connection, or None: a slot to open one in."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def _discard(self, conn: asyncpg.Connection) -> None:
        """Drop a connection: its slot first; then a healthy one is closed politely in the
        background and any other terminated."""
        self._forget(conn)
        try:
            if conn.is_closed():
                return
            if conn.is_in_transaction() or is_cancelling(conn):
                conn.terminate()
                return
            task = asyncio.get_running_loop().create_task(conn.close(timeout=5))
        except Exception:
            with contextlib.suppress(Exception):
                conn.terminate()
            return
        self._closes.add(task)
        task.add_done_callback(self._closed)

    def _closed(self, task: asyncio.Task[None]) -> None:
        self._closes.discard(task)
        if not task.cancelled():
            task.exception()  # a failed polite close of a connection we dropped: nothing to do

    def _forget(self, conn: asyncpg.Connection) -> None:
        if self._born.pop(conn, _GONE) is _GONE:
            return  # already forgotten (or counted out by close): its slot is free already
        self._size -= 1
        self._hand_over(None)  # a waiter may open a connection in its place


_GONE = -1


class _Acquired:
    __slots__ = ("_pool", "_conn")

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        self._conn = await self._pool._get()  # noqa: SLF001
        return self._conn

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        lost = exc is not None and lost_connection(exc, conn)
        await self._pool._release(conn, exc)  # noqa: SLF001
        if lost:
            assert exc is not None
            self._pool.expire_connections()  # its siblings likely died with it (a restart)
            self._pool.outage.started(f"connection lost: {exc!r}")
            raise StoreUnavailable(f"the database connection was lost: {exc!r}") from exc


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    init: Init = _init_connection,
    acquire_timeout: float = 5.0,
    outage: Outage | None = None,
) -> Pool:
    pool = Pool(
        dsn, min_size=min_size, max_size=max_size, init=init, acquire_timeout=acquire_timeout, outage=outage
    )
    await pool.open()
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


def dumps(value: Any) -> str:
    return _encode(value)


# A pooled connection the server dropped (restart, terminate) fails its next use with one of these.
DROPPED = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    ConnectionError,
)


def lost_connection(error: BaseException, conn: asyncpg.Connection) -> bool:
    """True if `error`, raised while `conn` was in use, means the server is gone for it.
    asyncpg's InterfaceError is also raised for misuse (a bug): it counts only once the
    connection is closed."""
    if isinstance(error, asyncpg.InterfaceError):
        try:
            return conn.is_closed()
        except Exception:
            return True
    # a cancelled statement (57014) leaves its connection usable
    return isinstance(error, DROPPED) and not isinstance(error, asyncpg.QueryCanceledError)


def unreachable(error: BaseException) -> bool:
    """True if `error` says the database is out of reach (or out of resources: disk, memory,
    connections), not that a query was wrong."""
    return isinstance(error, StoreUnavailable | TimeoutError | asyncpg.InsufficientResourcesError) or (
        isinstance(error, DROPPED) and not isinstance(error, asyncpg.InterfaceError)
    )


async def fetch_read(pool: Pool, sql: str, *args: Any) -> list[asyncpg.Record]:
    """A read-only query, tried once more on a fresh connection when the pooled one was dead
    (a connection the server cut is noticed only when it is next used)."""
    for attempt in range(2):
        async with pool.acquire() as conn:
            try:
                return await conn.fetch(sql, *args)
            except DROPPED:
                conn.terminate()
                pool.expire_connections()  # its siblings likely died with it (a restart)
                if attempt:
                    raise
    raise AssertionError("unreachable")
