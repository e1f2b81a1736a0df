"""Time from SIGTERM to exit of a real `eventgraph serve` under load.

    python -m benchmarks.shutdown [--runs 3] [--load 1] [--subscribers 20]

Each run starts `eventgraph serve` (default EVENTGRAPH_SHUTDOWN_TIMEOUT, 10 s) on a
scratch database, opens `--subscribers` live subscriptions over WebSocket, puts `--load`
seconds of load on it (32 clients: reads, `addItem` mutations), then sends SIGTERM while
the load runs, and reports the time to exit, the exit status, the WebSocket close codes
and what the clients saw after the signal. Two scenarios:

- busy: the load above only;
- stuck pool: also every pooled connection waits on a lock (LOCK TABLE events by this
  script) under 15 more requests, so the drain bound (half the budget) has to cancel them.

Uses DATABASE_URL's server (a scratch database) or the embedded PostgreSQL; REDIS_URL's
Redis with a private stream key, or the embedded Redis `serve` starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import redis.asyncio as redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from api.auth import mint_token
from benchmarks._db import drop_database, scratch_database
from benchmarks._serve import benchmark_arguments
from service.embedded_redis import stop_embedded_redis
from service.serving import ServeProcess

SECRET = "bench-shutdown-" + uuid.uuid4().hex
EVENTS = "subscription { events { position } }"


async def subscriber(port: int, token: str, closes: list[int | None]) -> None:
    async with connect(f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
        await ws.recv()
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": EVENTS}}))
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            closes.append(closed.rcvd.code if closed.rcvd else None)


async def client(http: httpx.AsyncClient, order_id: str, stop: asyncio.Event, seen: Counter[str]) -> None:
    add = (
        'mutation($o: ID!) { addItem(input: {orderId: $o, sku: "SKU1", quantity: 1, unitPrice: "1.00"}) { position } }'
    )
    read = "query($o: ID!) { order(id: $o) { id status } }"
    i = 0
    while not stop.is_set():
        i += 1
        body = {"query": add if i % 4 == 0 else read, "variables": {"o": order_id}}
        try:
            response = await http.post("/graphql", json=body)
            seen[str(response.status_code)] += 1
        except httpx.HTTPError as error:
            seen[type(error).__name__] += 1
            await asyncio.sleep(0.05)


async def run_once(stuck_pool: bool, load: float, subscribers: int) -> dict[str, object]:
    url, server_url = await asyncio.to_thread(scratch_database)
    work = Path(tempfile.mkdtemp(prefix="eventgraph-shutdown-"))
    stream = f"eventgraph:bench:{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "EVENTGRAPH_JWT_SECRET": SECRET,
        "EVENTGRAPH_DATA_DIR": str(work / "data"),
        "EVENTGRAPH_BROKER_STREAM": stream,
    }
    process = ServeProcess(env, work / "serve.log", "--log-level", "warning")
    port, base = process.port, process.url
    token = mint_token(SECRET, "staff_1", "staff")
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"}) as http:
            await process.started(60)
            created = await http.post("/graphql", json={"query": 'mutation { createOrder(input: {customerId: "cus_1"}) { order { id } } }'})
            order_id = created.json()["data"]["createOrder"]["order"]["id"]
            closes: list[int | None] = []
            sockets = [asyncio.create_task(subscriber(port, token, closes)) for _ in range(subscribers)]
            stop, seen = asyncio.Event(), Counter[str]()
            clients = [asyncio.create_task(client(http, order_id, stop, seen)) for _ in range(32)]
            await asyncio.sleep(load)
            admin = await asyncpg.connect(url)
            stuck = []
            if stuck_pool:
                await admin.execute("BEGIN")
                await admin.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
                stuck = [asyncio.create_task(http.post("/graphql", json={"query": "{ events(first: 1) { edges { cursor } } }"})) for _ in range(15)]
                await asyncio.sleep(1.0)
            before = sum(seen.values())
            sent = time.monotonic()
            process.process.send_signal(signal.SIGTERM)
            status = await process.exit_status(3600)
            took = time.monotonic() - sent
            stop.set()
            if stuck_pool:
                await admin.execute("ROLLBACK")
            await admin.close()
            await asyncio.gather(*clients, *stuck, return_exceptions=True)
            await asyncio.wait(sockets, timeout=5)
        return {
            "took": took,
            "status": status,
            "closes": Counter(closes),
            "requests before": before,
            "responses": dict(seen),
        }
    finally:
        await asyncio.to_thread(process.kill)
        stop_embedded_redis(work / "data" / "redis")
        if os.environ.get("REDIS_URL"):
            broker = redis.from_url(os.environ["REDIS_URL"])
            await broker.delete(stream)
            await broker.aclose()
        await asyncio.to_thread(drop_database, server_url, url)
        if os.environ.get("KEEP_LOG"):
            shutil.copy(work / "serve.log", os.environ["KEEP_LOG"])
        shutil.rmtree(work, ignore_errors=True)


async def main() -> None:
    parser = benchmark_arguments(__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--load", type=float, default=1.0, help="seconds of load before SIGTERM")
    parser.add_argument("--subscribers", type=int, default=20)
    args = parser.parse_args()
    timeout = os.environ.get("EVENTGRAPH_SHUTDOWN_TIMEOUT", "10")
    print(f"EVENTGRAPH_SHUTDOWN_TIMEOUT={timeout} s; {args.runs} runs per scenario")
    for name, stuck in (("busy", False), ("stuck pool", True)):
        times = []
        for _ in range(args.runs):
            result = await run_once(stuck, args.load, args.subscribers)
            times.append(float(result["took"]))  # type: ignore[arg-type]
            print(f"  {name}: {result['took']:.2f} s, exit status {result['status']},"
                  f" WebSocket closes {dict(result['closes'])}, responses {result['responses']}")  # type: ignore[call-overload]
        print(f"{name}: SIGTERM to exit median {statistics.median(times):.2f} s, max {max(times):.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
