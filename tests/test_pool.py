"""The connection pool on a real PostgreSQL: bounds, hand-over, and recovery from faults."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from eventstore.pool import create_pool, fetch_read


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
