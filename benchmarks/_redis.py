"""A Redis for a benchmark run: REDIS_URL's server, else an embedded one stopped afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as redis
import uvloop

from benchmarks._db import drop_database, scratch_database
from service.container import Services
from service.serving import redis_for_run
from service.settings import Settings


def benchmark_redis() -> contextlib.AbstractContextManager[str]:
    return redis_for_run("eventgraph-bench-redis-")


def run_on_scratch_servers(measure: Callable[[Any, str, str], Awaitable[None]], args: Any) -> None:
    """`measure(args, database_url, redis_url)` on a scratch database and a benchmark Redis."""
    url, server = scratch_database()
    try:
        with benchmark_redis() as redis_url:
            uvloop.run(measure(args, url, redis_url))
    finally:
        drop_database(server, url)


@contextlib.asynccontextmanager
async def services_and_stream(url: str, redis_url: str) -> AsyncIterator[tuple[Services, redis.Redis, str]]:
    """The services (projections off), a Redis client and a stream key of the run's own;
    afterwards the key is deleted and all is closed."""
    services = await Services.start(Settings(run_projections=False), url)
    client = redis.from_url(redis_url)
    key = f"eventgraph:bench:{uuid.uuid4().hex}"
    try:
        yield services, client, key
    finally:
        await client.delete(key)
        await client.aclose()
        await services.close()
