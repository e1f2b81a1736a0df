"""Add-item commands through the command layer (no HTTP), with the gap-free order in force.

    python -m benchmarks.commands [--seconds 5]

Prints: commands/s over 1,000 orders with 8 concurrent callers; one hot order with
32 concurrent callers; a raw asyncpg loop (read the stream version, insert one event,
commit; no global order) on the same database with 8 connections; and the ratios.
Each line also gives this process's CPU time per command (the database's is not
counted): on a small machine the command layer is bound by it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import uvloop

from benchmarks._db import drop_database, scratch_database
from domain.commands import AddItem, CreateOrder
from eventstore.pool import create_pool
from service.container import Services
from service.context import Principal, RequestContext, Role
from service.settings import Settings

STAFF = RequestContext.new(Principal("bench", Role.STAFF))


@dataclass(frozen=True)
class Rate:
    per_second: float
    done: int
    cpu_per_op: float  # seconds of this process's CPU per operation

    def line(self, unit: str) -> str:
        return f"{self.per_second:8.0f} {unit}/s ({self.cpu_per_op * 1e6:4.0f} us CPU each)"


async def measured(run: Callable[[], Awaitable[int]]) -> Rate:
    """Runs `run` (which returns how many operations it did) and rates it."""
    cpu, start = time.process_time(), time.perf_counter()
    done = await run()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return Rate(done / elapsed, done, cpu / max(done, 1))


async def command_rate(services: Services, orders: list[str], callers: int, seconds: float) -> Rate:
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller(index: int) -> None:
        nonlocal done
        n = 0
        while time.perf_counter() < deadline:
            order_id = orders[(index + n * callers) % len(orders)]
            await services.execute(
                STAFF, AddItem(order_id=order_id, sku=f"S{index % 50}", quantity=1, unit_price="1.00")
            )
            n += 1
            done += 1

    async def run() -> int:
        await asyncio.gather(*(caller(i) for i in range(callers)))
        return done

    return await measured(run)


async def raw_rate(dsn: str, connections: int, seconds: float) -> Rate:
    """The unordered baseline: what a bare insert loop does on this database."""
    pool = await create_pool(dsn, min_size=connections, max_size=connections)
    await pool.execute("CREATE TABLE IF NOT EXISTS raw_events (id bigserial PRIMARY KEY,"
                       " stream_id text, version int, data jsonb, UNIQUE (stream_id, version))")
    done = 0
    deadline = time.perf_counter() + seconds

    async def loop(index: int) -> None:
        nonlocal done
        async with pool.acquire() as conn:
            n = 0
            while time.perf_counter() < deadline:
                stream = f"raw-{index}-{n % 125}"
                async with conn.transaction():
                    version = await conn.fetchval(
                        "SELECT coalesce(max(version), 0) FROM raw_events WHERE stream_id = $1", stream
                    )
                    await conn.execute(
                        "INSERT INTO raw_events (stream_id, version, data) VALUES ($1, $2, $3)",
                        stream, version + 1, '{"sku": "S", "quantity": 1, "price": "1.00"}',
                    )
                n += 1
                done += 1

    async def run() -> int:
        await asyncio.gather(*(loop(i) for i in range(connections)))
        return done

    rate = await measured(run)
    await pool.close()
    return rate


async def main(seconds: float) -> None:
    url, server = await asyncio.to_thread(scratch_database)
    try:
        services = await Services.start(Settings(pool_size=10), url)
        orders = [f"bench-{uuid.uuid4().hex[:8]}-{i}" for i in range(1000)]
        for chunk in range(0, len(orders), 100):
            await asyncio.gather(*(
                services.execute(STAFF, CreateOrder(customer_id="cus_bench", order_id=o))
                for o in orders[chunk : chunk + 100]
            ))
        many = await command_rate(services, orders, 8, seconds)
        hot = await command_rate(services, orders[:1], 32, seconds)
        version = await services.reader.stream_version(f"order-{orders[0]}")
        head = await services.reader.head_position()
        gapless = await services.pool.fetchval("SELECT count(*) = max(position) FROM events")
        await services.close()
        raw = await raw_rate(url, 8, seconds)
        print(f"add-item, 1,000 orders, 8 concurrent:   {many.line('commands')}")
        print(f"add-item, one hot order, 32 concurrent: {hot.line('commands')}"
              f"  (stream version {version}; log head {head}; positions gap-free: {gapless})")
        print(f"raw asyncpg insert loop, 8 connections: {raw.line('inserts')}, unordered")
        print(f"ratio command layer / raw: {many.per_second / raw.per_second:.2f}"
              f"  hot / raw: {hot.per_second / raw.per_second:.2f}")
        assert version >= 1 + min(hot.done, 50 * 10_000), "a hot-order command was lost"
    finally:
        await asyncio.to_thread(drop_database, server, url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    uvloop.run(main(parser.parse_args().seconds))
