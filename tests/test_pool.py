"""The connection pool on a real PostgreSQL: bounds, hand-over, and recovery from faults."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from eventstore import (
    Appender,
    AppendRequest,
    EventStoreError,
    NewEvent,
    StoreUnavailable,
    StreamWrite,
)
from eventstore.pool import Pool, create_pool, fetch_read
from tests.private_postgres import PrivatePostgres, private_postgres


async def backend_pids(dsn: str, pool_pids: set[int]) -> set[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE pid = ANY($1::int[])", list(pool_pids))
        return {r["pid"] for r in rows}
    finally:
        await conn.close()


async def test_never_more_than_max_size_connections_and_every_caller_served(dsn: str) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=3)
    try:
        pids = await asyncio.gather(*(pool.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.01)") for _ in range(40)))
        assert len(pids) == 40
        assert 1 <= len(set(pids)) <= 3
    finally:
        await pool.close()


async def test_a_connection_released_inside_a_transaction_is_rolled_back(dsn: str) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        await pool.execute("CREATE TEMP TABLE IF NOT EXISTS pool_probe (n int)")
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO pool_probe VALUES (1)")
        async with pool.acquire() as conn:  # the same (only) connection
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM pool_probe") == 0
    finally:
        await pool.close()


async def test_a_cancelled_query_drops_its_connection_and_frees_the_slot(dsn: str) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        first = await pool.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await pool.fetchval("SELECT pg_sleep(30)")
        # the slot is free again, on a fresh connection (the old one may still be cancelling)
        second = await asyncio.wait_for(pool.fetchval("SELECT pg_backend_pid()"), 5)
        assert second != first
    finally:
        await pool.close()


async def test_a_connection_killed_by_the_server_is_replaced(dsn: str) -> None:
    pool = await create_pool(dsn, min_size=2, max_size=2)
    try:
        pids = set(await asyncio.gather(*(pool.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.05)") for _ in range(2))))
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", list(pids))
        finally:
            await admin.close()
        for _ in range(50):  # wait until the server has really ended them
            if not await backend_pids(dsn, pids):
                break
            await asyncio.sleep(0.05)
        # reads retry once on a fresh connection; the pool then serves from new backends
        rows = await fetch_read(pool, "SELECT pg_backend_pid() AS pid")
        assert rows[0]["pid"] not in pids
        later = set(await asyncio.gather(*(pool.fetchval("SELECT pg_backend_pid()") for _ in range(4))))
        assert not later & pids
    finally:
        await pool.close()


async def test_expired_connections_are_not_reused(dsn: str) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as busy:
            before = await busy.fetchval("SELECT pg_backend_pid()")
            pool.expire_connections()  # `busy` is dropped when it comes back
        after = await pool.fetchval("SELECT pg_backend_pid()")
        assert after != before
    finally:
        await pool.close()


async def test_a_closed_pool_refuses_and_its_waiters_get_an_error(dsn: str) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    async with pool.acquire():
        waiter = asyncio.create_task(pool.fetchval("SELECT 1"))
        await asyncio.sleep(0.05)
        await pool.close()
        with pytest.raises(asyncpg.InterfaceError):
            await waiter
    with pytest.raises(asyncpg.InterfaceError):
        await pool.fetchval("SELECT 1")


async def assert_whole(pool: Pool, max_size: int) -> None:
    """Every slot is accounted for: nothing busy, and `max_size` callers can hold a
    connection at once (a lost slot would make the last of them time out)."""
    assert (pool.busy, pool.size) == (0, pool.idle) and pool.size <= max_size
    held = asyncio.Event()

    async def hold() -> int:
        async with pool.acquire() as conn:
            if pool.busy == max_size:
                held.set()
            await held.wait()
            return int(await conn.fetchval("SELECT pg_backend_pid()"))

    pids = await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(max_size))), 10)
    assert len(set(pids)) == max_size
    assert (pool.busy, pool.size, pool.idle) == (0, max_size, max_size)


async def terminate(dsn: str, pids: list[int]) -> None:
    """End backends from another connection, and wait until the server has ended them."""
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids)
        for _ in range(100):
            if not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"backends {pids} still there")
    finally:
        await admin.close()


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[Pool]:
    pool = await create_pool(dsn, min_size=2, max_size=2, acquire_timeout=3)
    yield pool
    await pool.close()


async def backend_pid(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT pg_backend_pid()"))


async def pool_pids(pool: Pool, n: int) -> set[int]:
    pids = await asyncio.gather(*(pool.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.05)") for _ in range(n)))
    assert len(set(pids)) == n
    return set(pids)


async def running(dsn: str, sql: str) -> None:
    """Wait until a backend of this database runs `sql`."""
    admin = await asyncpg.connect(dsn)
    try:
        for _ in range(250):
            if await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state = 'active' AND query = $1",
                sql,
            ):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"nothing runs {sql!r}")
    finally:
        await admin.close()


async def test_connections_the_server_ends_while_idle(pool: Pool, dsn: str) -> None:
    pids = list(await pool_pids(pool, 2))
    await terminate(dsn, pids)
    try:  # a closed socket noticed only on use fails that use, once, as an outage
        pid = await pool.fetchval("SELECT pg_backend_pid()")
    except StoreUnavailable:
        pid = await pool.fetchval("SELECT pg_backend_pid()")
    assert pid not in pids
    await assert_whole(pool, 2)


async def test_a_connection_the_server_ends_mid_query(pool: Pool, dsn: str) -> None:
    pid: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def sleep() -> None:
        async with pool.acquire() as conn:
            pid.set_result(await backend_pid(conn))
            await conn.execute("SELECT pg_sleep(30)")

    query = asyncio.create_task(sleep())
    await terminate(dsn, [await pid])
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(query, 10)
    await assert_whole(pool, 2)


async def test_a_query_cancelled_mid_flight(pool: Pool, dsn: str) -> None:
    query = asyncio.create_task(pool.fetchval("SELECT pg_sleep(30)"))
    await running(dsn, "SELECT pg_sleep(30)")
    assert pool.busy == 1
    query.cancel()
    with pytest.raises(asyncio.CancelledError):
        await query
    await assert_whole(pool, 2)


@pytest.mark.parametrize("how", ["terminate", "close", "server"])
async def test_a_connection_that_dies_inside_a_transaction(pool: Pool, dsn: str, how: str) -> None:
    async with pool.acquire() as conn:
        await conn.execute("BEGIN")
        await conn.execute("SELECT 1")
        if how == "terminate":
            conn.terminate()
        elif how == "close":
            await conn.close()
        else:
            await terminate(dsn, [await backend_pid_in_transaction(dsn)])
    await assert_whole(pool, 2)


async def backend_pid_in_transaction(dsn: str) -> int:
    admin = await asyncpg.connect(dsn)
    try:
        return int(
            await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE state = 'idle in transaction'"
                " AND datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await admin.close()


@pytest.mark.parametrize("raising", [False, True])
async def test_a_connection_our_code_terminated_then_released(pool: Pool, raising: bool) -> None:
    """The append bug: `terminate()` and then the release asked the dead connection about
    its transaction, which raised before the pool let go of the slot."""
    for _ in range(3):  # more than max_size: a lost slot would show
        with contextlib.suppress(RuntimeError):
            async with pool.acquire() as conn:
                conn.terminate()
                if raising:
                    raise RuntimeError("the caller's own failure")
    await assert_whole(pool, 2)


async def test_acquire_times_out_when_every_slot_is_busy(dsn: str) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=1, acquire_timeout=0.2)
    try:
        async with pool.acquire():
            with pytest.raises(StoreUnavailable, match="no database connection within 0.2 s"):
                await pool.fetchval("SELECT 1")
        await assert_whole(pool, 1)
    finally:
        await pool.close()
async def test_failed_appends_give_every_connection_back(dsn: str) -> None:
    """A batch PostgreSQL refuses (a NUL, which jsonb cannot store) used to leave its slot
    taken for good: after `max_size` of them every acquire waited forever."""
    pool = await create_pool(dsn, min_size=1, max_size=2)
    appender = Appender(pool)
    try:
        for _ in range(5):
            with pytest.raises(EventStoreError):
                await asyncio.wait_for(
                    appender.append(AppendRequest([StreamWrite("nul-1", [NewEvent("t.v1", {"x": "a\x00b"}, {})])])), 10
                )
        result = await asyncio.wait_for(
            appender.append(AppendRequest([StreamWrite("ok-1", [NewEvent("t.v1", {"x": "ab"}, {})])])), 10
        )
        assert result.last_position == 1
        assert pool.busy == 0 and pool.size == pool.idle <= 2
    finally:
        await appender.close()
        await pool.close()


@pytest.fixture(scope="module")
def restartable() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


async def test_a_server_restart(restartable: PrivatePostgres, caplog: pytest.LogCaptureFixture) -> None:
    """Busy and idle connections die with the server; while it is down, acquiring fails
    at once (refused); once it is back the next query works; one log line each way."""
    caplog.set_level(logging.INFO, logger="eventgraph.outage")
    pool = await create_pool(restartable.url(), min_size=2, max_size=3, acquire_timeout=3)
    try:
        started = asyncio.Event()

        async def sleep() -> None:
            async with pool.acquire() as conn:
                started.set()
                await conn.execute("SELECT pg_sleep(30)")

        query = asyncio.create_task(sleep())
        await started.wait()
        await asyncio.to_thread(restartable.stop)
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(query, 10)
        for _ in range(3):
            with pytest.raises(StoreUnavailable, match="cannot connect"):
                await asyncio.wait_for(pool.fetchval("SELECT 1"), 10)
        assert (pool.busy, pool.size) == (0, pool.idle)
        await asyncio.to_thread(restartable.start)
        assert await pool.fetchval("SELECT 1") == 1
        await assert_whole(pool, 3)
    finally:
        await pool.close()
    logged = [(r.levelno, r.getMessage().split(":")[0]) for r in caplog.records if r.name == "eventgraph.outage"]
    assert logged == [(logging.WARNING, "database unavailable"), (logging.INFO, "database available again")]
async def test_a_connection_terminated_by_its_user_frees_its_slot_and_keeps_the_users_error(
    dsn: str,
) -> None:
    """Releasing a terminated connection raised AttributeError, which replaced the caller's
    exception, a cancellation too: the appender then took its cancellation for a failed
    batch, ran on, and its close() waited forever."""
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        with pytest.raises(ValueError):
            async with pool.acquire() as conn:
                conn.terminate()
                raise ValueError("the caller's own error")
        entered = asyncio.Event()

        async def terminate_then_wait() -> None:
            async with pool.acquire() as conn:
                conn.terminate()
                entered.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(terminate_then_wait())
        await entered.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
        assert await pool.fetchval("SELECT 1") == 1  # the only slot is free again
    finally:
        await pool.close()
