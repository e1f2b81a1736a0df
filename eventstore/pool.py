"""Connections and a pool of them, with the store's JSON codec."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import orjson


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
    hands a released one straight to the longest waiter. No reset on release: pooled
    connections never hold session state here (LISTEN and session advisory locks use
    dedicated connections, `connect`); a connection released inside a transaction is
    rolled back, and one that failed, timed out or was cancelled mid-query is dropped.
    """

    def __init__(self, dsn: str, *, min_size: int, max_size: int, init: Init) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError("need 0 <= min_size <= max_size and max_size >= 1")
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._init = init
        self._idle: list[asyncpg.Connection] = []
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._size = 0  # connections open or opening
        self._generation = 0  # connections of an older one are dropped, not reused
        self._born: dict[asyncpg.Connection, int] = {}
        self._closing = False
        self._closes: set[asyncio.Task[None]] = set()  # polite closes under way (kept referenced)

    async def open(self) -> None:
        connections = await asyncio.gather(*(self._connect() for _ in range(self._min_size)))
        for conn in connections:
            self._put(conn)

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
        for conn in self._idle:
            self._discard(conn)
        self._idle.clear()

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
        while True:
            if self._closing:
                raise asyncpg.InterfaceError("the pool is closed")
            while self._idle:
                conn = self._idle.pop()
                if conn.is_closed():  # the server went away while it idled
                    self._forget(conn)
                    continue
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
        except BaseException:
            self._size -= 1
            self._hand_over(None)
            raise
        self._born[conn] = self._generation
        return conn

    async def _release(self, conn: asyncpg.Connection, failed: BaseException | None) -> None:
        if (
            self._closing
            or conn.is_closed()
            or self._born.get(conn) != self._generation
            or isinstance(failed, asyncio.CancelledError | TimeoutError)
            or conn._protocol._is_cancelling()  # noqa: SLF001 - asyncpg's pool checks the same
        ):
            self._discard(conn)
            return
        if conn.is_in_transaction():
            try:
                await conn.execute("ROLLBACK")
            except BaseException:
                self._discard(conn)
                raise
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
        """Drop a connection: a healthy one is closed politely in the background."""
        if conn.is_closed():
            pass  # terminated already (by its user, or the server): no protocol left to ask
        elif conn.is_in_transaction() or conn._protocol._is_cancelling():  # noqa: SLF001
            conn.terminate()
        else:
            task = asyncio.get_running_loop().create_task(conn.close(timeout=5))
            self._closes.add(task)
            task.add_done_callback(self._closed)
        self._forget(conn)

    def _closed(self, task: asyncio.Task[None]) -> None:
        self._closes.discard(task)
        if not task.cancelled():
            task.exception()  # a failed polite close of a connection we dropped: nothing to do

    def _forget(self, conn: asyncpg.Connection) -> None:
        self._born.pop(conn, None)
        self._size -= 1
        self._hand_over(None)  # a waiter may open a connection in its place


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
        if conn is not None:
            await self._pool._release(conn, exc)  # noqa: SLF001




async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 10, init: Init = _init_connection
) -> Pool:
    pool = Pool(dsn, min_size=min_size, max_size=max_size, init=init)
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
