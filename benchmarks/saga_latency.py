"""Saga latency: submitOrder to COMPLETED at a steady rate.

    python -m benchmarks.saga_latency [--rate 50] [--seconds 20]

Runs the relay and the three consumer groups in this process (as `serve`
does), prepares orders of two lines over 50 products for 200 funded customers
(not timed), then submits `--rate` orders per second for `--seconds`. A
submit's latency runs from the call to the commit of its `order.completed`
event (the order's status is COMPLETED from then on). Prints p50, p99 and max.
Uses DATABASE_URL / REDIS_URL, else embedded servers.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

from benchmarks._redis import run_on_scratch_servers, services_and_stream
from benchmarks._serve import benchmark_arguments
from domain.commands import AddItem, CreateOrder, DepositFunds, RegisterProduct, SubmitOrder
from service.container import Services, build_upcasters
from service.context import Principal, RequestContext, Role
from service.relay import OutboxRelay
from service.saga.tracked import TrackedAppends
from service.saga.worker import saga_consumer

STAFF = RequestContext.new(Principal("bench", Role.STAFF))
PRODUCTS = 50
CUSTOMERS = 200


async def prepare(services: Services, orders: int) -> list[str]:
    for n in range(PRODUCTS):
        await services.execute(
            STAFF, RegisterProduct(sku=f"P{n}", name=f"Product {n}", price="1.00", initial_stock=1_000_000)
        )
    for n in range(CUSTOMERS):
        await services.execute(STAFF, DepositFunds(customer_id=f"cus_{n}", amount="1000000.00"))
    rng = random.Random(1)
    ids = []
    for n in range(orders):
        order_id = f"ord_bench_{n}"
        await services.execute(STAFF, CreateOrder(customer_id=f"cus_{n % CUSTOMERS}", order_id=order_id))
        for sku in rng.sample(range(PRODUCTS), 2):
            await services.execute(STAFF, AddItem(order_id=order_id, sku=f"P{sku}", quantity=1, unit_price="2.50"))
        ids.append(order_id)
    return ids


async def completions(services: Services, done: dict[str, float], stop: asyncio.Event) -> None:
    """Watch the log for order.completed events: order id -> commit time (epoch seconds)."""
    after = await services.reader.head_position()
    while not stop.is_set():
        events = await services.reader.read_all(after, 1000, types=["order.completed.v1"])
        for event in events:
            done[event.stream_id.removeprefix("order-")] = event.recorded_at.timestamp()
        after = events[-1].position if events else after
        if not events:
            await asyncio.sleep(0.002)


async def hops(services: Services, after: int) -> dict[str, str]:
    """Per reacting event type, the median time from its cause's commit to its own."""
    committed: dict[str, float] = {}
    delays: dict[str, list[float]] = {}
    while events := await services.reader.read_all(after, 1000):
        for event in events:
            committed[str(event.event_id)] = event.recorded_at.timestamp()
            cause = committed.get(event.metadata.get("causation_id") or "")
            if cause is not None:
                delays.setdefault(event.type, []).append(event.recorded_at.timestamp() - cause)
        after = events[-1].position
    return {t: f"{statistics.median(d) * 1000:.1f} ms" for t, d in delays.items()}


async def measure(args: argparse.Namespace, url: str, redis_url: str) -> None:
    total = int(args.rate * args.seconds)
    async with services_and_stream(url, redis_url) as (services, client, key):
        ids = await prepare(services, total)
        tracked = TrackedAppends(services.appender, services.reader)
        reactions = [r(tracked) for r in services.modules.reactions]
        runnables = [
            OutboxRelay(url, client, build_upcasters(), stream_key=key, poll_interval=0.5),
            saga_consumer(client, reactions, key),
        ]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(r.run(stop)) for r in runnables]
        done: dict[str, float] = {}
        watcher = asyncio.create_task(completions(services, done, stop))
        await asyncio.sleep(1)  # relay lease and consumer groups in place
        submitted: dict[str, float] = {}
        first_position = await services.reader.head_position()
        pending = set()
        start = time.perf_counter()
        for n, order_id in enumerate(ids):
            await asyncio.sleep(max(0.0, start + n / args.rate - time.perf_counter()))
            submitted[order_id] = time.time()
            pending.add(asyncio.create_task(services.execute(STAFF, SubmitOrder(order_id=order_id))))
        await asyncio.gather(*pending)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # polled: `done` is filled by the watcher
            if len(done) >= total:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*tasks, watcher)
        latencies = sorted((done[o] - submitted[o]) * 1000 for o in ids if o in done)
        p = statistics.quantiles(latencies, n=100)
        print(
            f"saga: {len(latencies)}/{total} orders COMPLETED at {args.rate}/s:"
            f" p50 {p[49]:.1f} ms, p99 {p[98]:.1f} ms, max {latencies[-1]:.1f} ms"
        )
        print("median hop, cause committed -> effect committed:", await hops(services, first_position))


if __name__ == "__main__":
    parser = benchmark_arguments(__doc__)
    parser.add_argument("--rate", type=float, default=50.0, help="orders submitted per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    run_on_scratch_servers(measure, parser.parse_args())
