"""Faults with real processes: killed relay and saga processes, Redis restarted mid-flow."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

import asyncpg
import redis.asyncio as redis

from domain.order import OrderStatus
from eventstore.outbox import backlog
from service.container import Services
from service.relay import relay_worker
from tests.relay_support import RedisProcess, append_events, entries, eventually, private_stream_key
from tests.saga_support import deposit, order, place_order, product, saga, settled, stock, wallet


async def start(command: str, dsn: str, redis_url: str, key: str, tmp_path: Path, *args: str) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "REDIS_URL": redis_url,
        "EVENTGRAPH_BROKER_STREAM": key,
        "EVENTGRAPH_DATA_DIR": str(tmp_path),
        "EVENTGRAPH_JWT_SECRET": "test-secret-0123456789abcdef0123456789abcdef",
    }
    code = "import sys; from service.cli import main; sys.exit(main(sys.argv[1:]))"
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, command, *args, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )


async def kill(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGKILL)
    await process.wait()


async def stop(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(process.wait(), 20)


async def test_a_killed_relay_process_loses_nothing(
    services: Services, dsn: str, redis_url: str, broker, tmp_path: Path
) -> None:
    client, key = broker
    first = await start("relay", dsn, redis_url, key, tmp_path)
    await append_events(services.appender, 50)
    await eventually(lambda: _backlog_is(services, 0))
    writer = asyncio.create_task(append_events(services.appender, 400))
    await eventually(lambda: _published_at_least(client, key, 80))
    await kill(first)  # mid-stream: batches in flight may go out again
    await writer
    second = await start("relay", dsn, redis_url, key, tmp_path)
    try:
        await eventually(lambda: _backlog_is(services, 0), within=60)
    finally:
        await stop(second)
    positions = [int(e["position"]) for e in await entries(client, key)]
    # at least once, in order: first sightings are 1..450; a batch cut off by the kill may repeat
    assert list(dict.fromkeys(positions)) == list(range(1, 451))


async def _backlog_is(services: Services, count: int) -> bool:
    return await backlog(services.pool) == count


async def _published_at_least(client: redis.Redis, key: str, count: int) -> bool:
    return await client.xlen(key) >= count


async def test_a_killed_saga_process_is_taken_over_with_every_order_charged_once(
    services: Services, dsn: str, redis_url: str, broker, tmp_path: Path
) -> None:
    client, key = broker
    await stock(services, A=1000, B=1000)
    for n in range(10):
        await deposit(services, f"cus_{n}", "1000.00")
    relay = await start("relay", dsn, redis_url, key, tmp_path)
    doomed = await start("saga", dsn, redis_url, key, tmp_path, "--claim-idle", "1")
    try:
        ids = [f"ord_{n}" for n in range(30)]
        orders = [place_order(services, i, {"A": (1, "3.00"), "B": (2, "1.00")}, customer_id=f"cus_{n % 10}")
                  for n, i in enumerate(ids)]
        await asyncio.gather(*orders[:15])
        await eventually(lambda: _any_completed(services, ids[:15]))
        await kill(doomed)  # whatever it was handling stays pending in its groups
        await asyncio.gather(*orders[15:])
        successor = await start("saga", dsn, redis_url, key, tmp_path, "--claim-idle", "1")
        try:
            statuses = [(await settled(services, i, within=60)).status for i in ids]
            await eventually(lambda: _reserved_is_zero(services), within=60)
        finally:
            await stop(successor)
    finally:
        await stop(relay)
    assert statuses == [OrderStatus.COMPLETED] * 30
    balances = [(await wallet(services, f"cus_{n}")).balance for n in range(10)]
    assert [str(b) for b in balances] == ["985.00"] * 10  # three orders of 5.00 each, charged once
    a = await product(services, "A")
    assert (a.available, a.reserved) == (970, 0)


async def _any_completed(services: Services, ids: list[str]) -> bool:
    statuses = [(await order(services, i)).status for i in ids]
    return OrderStatus.COMPLETED in statuses


async def _reserved_is_zero(services: Services) -> bool:
    return (await product(services, "A")).reserved == 0 and (await product(services, "B")).reserved == 0


async def test_redis_restarted_mid_flow_loses_no_order(services: Services, tmp_path: Path) -> None:
    server = RedisProcess(tmp_path)
    server.start()
    client = redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=1)
    key = private_stream_key()
    try:
        await stock(services, A=100)
        await deposit(services, "cus_1", "100.00")
        async with saga(services, client, key):
            await place_order(services, "ord_0", {"A": (1, "1.00")})
            assert (await settled(services, "ord_0")).status is OrderStatus.COMPLETED
            server.stop()
            for n in range(1, 6):  # commands succeed while the broker is down
                await place_order(services, f"ord_{n}", {"A": (1, "1.00")})
            assert (await order(services, "ord_5")).status is OrderStatus.SUBMITTED
            server.start()
            statuses = [(await settled(services, f"ord_{n}", within=60)).status for n in range(1, 6)]
        assert statuses == [OrderStatus.COMPLETED] * 5
        assert str((await wallet(services, "cus_1")).balance) == "94.00"
    finally:
        await client.aclose()
        server.stop()


async def test_without_redis_the_relay_stays_off_and_says_so(services: Services, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, logger="service.relay")
    await asyncio.wait_for(relay_worker(services, asyncio.Event()), 5)  # returns at once
    assert "outbox relay off" in caplog.text


async def _terminate_other_backends(dsn: str) -> int:
    """Drop every other connection to the test database, as a server restart would."""
    conn = await asyncpg.connect(dsn)
    try:
        return len(await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ))
    finally:
        await conn.close()


async def test_dropped_database_connections_lose_no_order(services: Services, dsn: str, broker) -> None:
    client, key = broker
    await stock(services, A=100)
    await deposit(services, "cus_1", "100.00")
    async with saga(services, client, key):
        await place_order(services, "ord_0", {"A": (1, "1.00")})
        await settled(services, "ord_0")
        assert await _terminate_other_backends(dsn) >= 2  # the relay's lease and the pool's
        await _flush_dead_connections(services)
        for n in range(1, 6):
            await place_order(services, f"ord_{n}", {"A": (1, "1.00")})
        statuses = [(await settled(services, f"ord_{n}", within=90)).status for n in range(1, 6)]
    assert statuses == [OrderStatus.COMPLETED] * 5
    assert str((await wallet(services, "cus_1")).balance) == "94.00"


async def _flush_dead_connections(services: Services) -> None:
    """The test's own commands get fresh connections (each dead pooled one fails once)."""
    for _ in range(30):
        with contextlib.suppress(Exception):  # whichever way a dead connection fails
            await services.pool.fetchval("SELECT 1")
