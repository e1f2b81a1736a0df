"""Outbox relay throughput into Redis Streams.

    python -m benchmarks.relay_throughput [--events 100000] [--batch 2000]

Fills the outbox with `--events` order-sized events (appended in large
batches, not timed), then times one relay draining it into a Redis stream:
publish each batch with one Lua script call (an XADD per event), then mark
the rows published.
Prints messages/s. Uses DATABASE_URL / REDIS_URL, else embedded servers.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from benchmarks._redis import run_on_scratch_servers, services_and_stream
from benchmarks._serve import benchmark_arguments
from eventstore import AppendRequest, NewEvent, StreamWrite
from eventstore.outbox import backlog
from service.container import Services, build_upcasters
from service.relay import OutboxRelay

CHUNK = 500  # events per append while filling


async def fill(services: Services, events: int) -> None:
    metadata = {"correlation_id": str(uuid.uuid4()), "causation_id": None, "user_id": "cus_1", "service": "bench"}
    for start in range(0, events, CHUNK):
        writes = [
            StreamWrite(
                f"order-bench-{n % 2000}",
                [NewEvent("item.added.v2", {"item_id": f"SKU{n % 97}", "quantity": 2, "price": "19.99", "discount": "0"}, metadata)],
            )
            for n in range(start, min(start + CHUNK, events))
        ]
        await services.appender.append(AppendRequest(writes=writes))


async def measure(args: argparse.Namespace, url: str, redis_url: str) -> None:
    async with services_and_stream(url, redis_url) as (services, client, key):
        await fill(services, args.events)
        relay = OutboxRelay(url, client, build_upcasters(), stream_key=key, batch_size=args.batch)
        stop = asyncio.Event()
        start = time.perf_counter()
        task = asyncio.create_task(relay.run(stop))
        while True:  # polled: the relay has no completion signal of its own
            if relay.published >= args.events:
                break
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - start
        stop.set()
        await task
        assert await backlog(services.pool) == 0
        assert await client.xlen(key) == args.events
        print(
            f"relay: {args.events} events in {elapsed:.2f} s = {args.events / elapsed:,.0f} messages/s"
            f" (batch {args.batch})"
        )


if __name__ == "__main__":
    parser = benchmark_arguments(__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000)
    run_on_scratch_servers(measure, parser.parse_args())
