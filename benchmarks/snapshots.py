"""A cold load of a long stream with and without snapshots, beside a short stream's.

    python -m benchmarks.snapshots [--events 200000]

Seeds one product stream of `--events` events (restocks) and one of 10 in a scratch
database (DATABASE_URL's server, else the embedded one), then times cold loads (a new
`Aggregates` each time, no process cache): the long stream by the full fold, the long
stream from its snapshot, and the short one.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from benchmarks._db import drop_database, scratch_database
from benchmarks._serve import benchmark_arguments
from domain.product import Product, product_stream
from eventstore import Appender, AppendRequest, EventReader, NewEvent, StreamWrite
from eventstore.pool import create_pool
from eventstore.snapshots import SnapshotStore
from service.aggregates import Aggregates
from service.container import build_upcasters
from service.snapshots import Snapshots

META = {"correlation_id": "bench"}


async def seed(appender: Appender, sku: str, count: int) -> None:
    registered = NewEvent(
        "product.registered.v1",
        {"sku": sku, "name": "Mug", "price": "4.50", "currency": "USD", "initial_stock": 0},
        META,
    )
    events = [registered] + [NewEvent("product.restocked.v1", {"quantity": 1}, META) for _ in range(count - 1)]
    for start in range(0, count, 5000):
        chunk = events[start : start + 5000]
        await appender.append(AppendRequest([StreamWrite(product_stream(sku), chunk, start)]))


async def timed_loads(aggregates: Aggregates, sku: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await aggregates.load(product_stream(sku), lambda: Product(sku))
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main(events: int, runs: int) -> None:
    url, server_url = scratch_database()
    try:
        asyncio.run(measure(url, events, runs))
    finally:
        drop_database(server_url, url)


async def measure(url: str, events: int, runs: int) -> None:
    pool = await create_pool(url, max_size=4)
    appender = Appender(pool, outbox=False)
    await seed(appender, "LONG", events)
    await seed(appender, "SHORT", 10)
    reader = EventReader(pool, build_upcasters())
    snapshots = Snapshots(SnapshotStore(pool))
    full = await timed_loads(Aggregates(reader), "LONG", runs)
    await Aggregates(reader, snapshots).load(product_stream("LONG"), lambda: Product("LONG"))
    await snapshots.close()  # the first load folded them all: a snapshot was taken
    from_snapshot = await timed_loads(Aggregates(reader, Snapshots(SnapshotStore(pool))), "LONG", runs)
    short = await timed_loads(Aggregates(reader, Snapshots(SnapshotStore(pool))), "SHORT", runs)
    print(f"cold load, median of {runs}:")
    print(f"  {events:,} events, full fold:     {full:9.2f} ms")
    print(f"  {events:,} events, from snapshot: {from_snapshot:9.2f} ms")
    print(f"  10 events (no snapshot):       {short:9.2f} ms")
    print(f"  long from snapshot / short: x{from_snapshot / short:.2f}; full fold / short: x{full / short:.0f}")
    await appender.close()
    await pool.close()


if __name__ == "__main__":
    parser = benchmark_arguments(__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    main(args.events, args.runs)
