"""A Redis for a benchmark run: REDIS_URL's server, else an embedded one stopped afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from benchmarks._db import drop_database, scratch_database
from service.serving import redis_for_run


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
