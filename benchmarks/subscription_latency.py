"""Subscription latency and memory against a real `eventgraph serve` process.

    python -m benchmarks.subscription_latency [--seconds 10] [--rate 1000] [--subscribers 100]
        [--idle 2000] [--parts ws,hub,memory]

1. Commit-to-client latency: `--subscribers` WebSocket clients, each subscribed to
   `events(streamId: "bench-<i>")`; this process appends `--rate` events/s (one event per
   append, spread over the subscribers' streams, group-committed by the appender) and
   times each event from its append call (and from the commit acknowledgement) to its
   `next` message at the client. Every subscriber's events are checked: all, in order.
2. The same hub without WebSockets: `--subscribers` in-process subscriptions to the whole
   log (every one gets every event), in a second server-less pass.
3. Memory per idle subscription: the serve process's RSS before and after opening `--idle`
   subscriptions (100 per socket), and per socket with one subscription each.

Uses DATABASE_URL's server (a scratch database) or the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import uvloop
from websockets.asyncio.client import ClientConnection, connect

from api.auth import mint_token
from benchmarks._db import drop_database, scratch_database
from eventstore import AppendRequest, NewEvent, StreamWrite
from eventstore.subscription import subscribe
from service.container import Services
from service.serving import ServeProcess
from service.settings import Settings

SECRET = "bench-secret-long-enough-for-hs256-keys"
META = {"correlation_id": "bench", "service": "bench"}
QUERY = "subscription($s: String) { events(streamId: $s) { position } }"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def start_serve(dsn: str, work: Path) -> ServeProcess:
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "EVENTGRAPH_JWT_SECRET": SECRET,
        "EVENTGRAPH_RUN_PROJECTIONS": "0",
        "EVENTGRAPH_RUN_RELAY": "0",
        "EVENTGRAPH_RUN_SAGA": "0",
        "EVENTGRAPH_WS_PING_INTERVAL": "600",
        "REDIS_URL": "redis://127.0.0.1:1/0",  # never used (relay and saga are off): no embedded Redis
    }
    process = ServeProcess(env, work / "serve.log", "--log-level", "warning")
    await process.started(60)
    return process


async def open_socket(port: int) -> ClientConnection:
    ws = await connect(
        f"ws://127.0.0.1:{port}/graphql",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        max_queue=None,
    )
    token = mint_token(SECRET, "bench", "staff")
    await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    return ws


async def append_one(services: Services, stream: str, sent: dict[int, tuple[float, float]]) -> None:
    t0 = time.monotonic()
    result = await services.appender.append(
        AppendRequest([StreamWrite(stream, [NewEvent("bench.tick.v1", {"n": 1}, META)])])
    )
    sent[result.last_position] = (t0, time.monotonic())


async def write_at_rate(services: Services, streams: list[str], rate: int, seconds: float,
                        sent: dict[int, tuple[float, float]]) -> None:
    tick = 0.01  # 10 ms: rate/100 appends per tick
    per_tick = max(1, round(rate * tick))
    start = time.monotonic()
    tasks = []
    n = 0
    for k in range(int(seconds / tick)):
        await asyncio.sleep(max(0.0, start + k * tick - time.monotonic()))
        for _ in range(per_tick):
            tasks.append(asyncio.create_task(append_one(services, streams[n % len(streams)], sent)))
            n += 1
    await asyncio.gather(*tasks)


async def latency(
    services: Services, serve_pid: int, port: int, subscribers: int, rate: int, seconds: float
) -> None:
    streams = [f"bench-{i}" for i in range(subscribers)]
    received: dict[int, float] = {}
    per_stream: dict[str, list[int]] = {s: [] for s in streams}
    sockets = [await open_socket(port) for _ in streams]

    async def read(ws: ClientConnection, stream: str) -> None:
        async for raw in ws:
            now = time.monotonic()
            message = json.loads(raw)
            if message["type"] == "next":
                position = int(message["payload"]["data"]["events"]["position"])
                received[position] = now
                per_stream[stream].append(position)
            elif message["type"] == "ping":
                await ws.send('{"type":"pong"}')

    for ws, stream in zip(sockets, streams, strict=True):
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": QUERY, "variables": {"s": stream}}}))
    readers = [asyncio.create_task(read(ws, s)) for ws, s in zip(sockets, streams, strict=True)]
    warmup: dict[int, tuple[float, float]] = {}
    await asyncio.gather(*(append_one(services, s, warmup) for s in streams))
    while not all(p in received for p in warmup):  # noqa: ASYNC110 - a benchmark's settle loop
        await asyncio.sleep(0.01)

    sent: dict[int, tuple[float, float]] = {}
    began, cpu_began = time.monotonic(), cpu_seconds(serve_pid)
    await write_at_rate(services, streams, rate, seconds, sent)
    wrote = time.monotonic() - began
    deadline = time.monotonic() + 10
    while not all(p in received for p in sent) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    cpu = cpu_seconds(serve_pid) - cpu_began
    missing = [p for p in sent if p not in received]
    for reader in readers:
        reader.cancel()
    for ws in sockets:
        await ws.close()
    from_call = [(received[p] - t0) * 1000 for p, (t0, _) in sent.items() if p in received]
    from_ack = [(received[p] - t1) * 1000 for p, (_, t1) in sent.items() if p in received]
    ordered = all(positions == sorted(set(positions)) for positions in per_stream.values())
    print(f"WebSocket: {subscribers} subscribers (one stream each), {len(sent) / wrote:.0f} events/s for {wrote:.1f} s,"
          f" {len(sent)} events; missing {len(missing)}; every subscriber in order, no duplicates: {ordered}")
    print(f"  append call -> client: p50 {pct(from_call, 0.5):.1f} ms  p99 {pct(from_call, 0.99):.1f} ms"
          f"  max {max(from_call):.1f} ms")
    print(f"  serve process CPU: {cpu:.2f} s for {len(sent)} events ({cpu / len(sent) * 1e6:.0f} us per event delivered)")
    print(f"  commit ack  -> client: p50 {pct(from_ack, 0.5):.1f} ms  p99 {pct(from_ack, 0.99):.1f} ms"
          f"  (negative: the NOTIFY beat the writer's acknowledgement)")


async def in_process(services: Services, subscribers: int, rate: int, seconds: float) -> None:
    """Every subscriber gets every event: the hub's fan-out without GraphQL or sockets."""
    received: list[dict[int, float]] = [{} for _ in range(subscribers)]
    start = await services.reader.head_position()

    async def follow(index: int) -> None:
        async for event in subscribe(services.live.hub, start):
            received[index][event.position] = time.monotonic()

    tasks = [asyncio.create_task(follow(i)) for i in range(subscribers)]
    await asyncio.sleep(0.2)
    sent: dict[int, tuple[float, float]] = {}
    began = time.monotonic()
    await write_at_rate(services, [f"solo-{i}" for i in range(100)], rate, seconds, sent)
    wrote = time.monotonic() - began
    deadline = time.monotonic() + 10
    while any(len(r) < len(sent) for r in received) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    for task in tasks:
        task.cancel()
    latencies = [(r[p] - t0) * 1000 for r in received for p, (t0, _) in sent.items() if p in r]
    complete = all(sorted(r) == sorted(sent) for r in received)
    print(f"In-process hub: {subscribers} subscribers x every event, {len(sent) / wrote:.0f} events/s,"
          f" {len(latencies)} deliveries; every subscriber got every event: {complete}")
    print(f"  append call -> subscriber: p50 {pct(latencies, 0.5):.1f} ms  p99 {pct(latencies, 0.99):.1f} ms")


async def memory(process: ServeProcess, port: int, idle: int) -> None:
    per_socket = 100
    base = rss_kib(process.pid)
    sockets = [await open_socket(port) for _ in range(idle // per_socket)]
    for k, ws in enumerate(sockets):
        for i in range(per_socket):
            payload = {"query": QUERY, "variables": {"s": f"idle-{k}-{i}"}}
            await ws.send(json.dumps({"id": str(i), "type": "subscribe", "payload": payload}))
    await asyncio.sleep(3)  # let every subscription open and settle
    held = rss_kib(process.pid)
    print(f"Memory: {idle} idle subscriptions on {len(sockets)} sockets: RSS {base / 1024:.1f} -> {held / 1024:.1f} MiB,"
          f" {(held - base) / idle:.1f} KiB per subscription (socket share included)")
    for ws in sockets:
        await ws.close()
    await asyncio.sleep(2)
    base = rss_kib(process.pid)
    count = min(idle, 500)
    singles = [await open_socket(port) for _ in range(count)]
    for i, ws in enumerate(singles):
        payload = {"query": QUERY, "variables": {"s": f"single-{i}"}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
    await asyncio.sleep(3)
    held = rss_kib(process.pid)
    print(f"  {count} sockets with one subscription each: {(held - base) / count:.1f} KiB per socket+subscription")
    for ws in singles:
        await ws.close()


async def main(args: argparse.Namespace, dsn: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="eventgraph-subscriptions-"))
    process = await start_serve(dsn, work)
    port = process.port
    print(f"serve pid {process.pid} on port {port}; load average {os.getloadavg()[0]:.2f} (2 cores shared)", flush=True)
    services = await Services.start(Settings(jwt_secret=SECRET), dsn)
    try:
        if "ws" in args.parts:
            await latency(services, process.pid, port, args.subscribers, args.rate, args.seconds)
        if "hub" in args.parts:
            await in_process(services, args.subscribers, args.rate, min(args.seconds, 5))
        if "memory" in args.parts:
            await memory(process, port, args.idle)
    finally:
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
        await services.close()
        await asyncio.to_thread(process.stop)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--parts", default="ws,hub,memory", help="which of ws,hub,memory to run")
    dsn, server = scratch_database()
    try:
        uvloop.run(main(parser.parse_args(), dsn))
    finally:
        drop_database(server, dsn)
