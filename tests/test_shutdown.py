"""SIGTERM ends `eventgraph serve` whatever its state: a real process, open subscriptions,
a pool whose every connection waits on a lock, a request in flight. And the watchdog: a
shutdown that never finishes ends at the bound, with one line."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from api.auth import mint_token
from service import serving
from service.serving import ServeProcess
from tests.relay_support import private_stream_key
from tests.subscription_support import EVENTS, GraphQLWS

SECRET = "shutdown-test-secret-0123456789abcdef01234567"
SHUTDOWN_TIMEOUT = 4.0
HANG_BOUND = 3 * SHUTDOWN_TIMEOUT  # a hang check, not a speed check
STUCK_REQUESTS = 15  # more than the pool's 10 connections
EVENTS_QUERY = '{"query":"{ events(first: 1) { edges { node { position } } } }"}'


@dataclass
class Serve:
    process: ServeProcess
    port: int
    log: Path

    def token(self, sub: str = "staff_1", role: str = "staff") -> str:
        return mint_token(SECRET, sub, role)


@pytest.fixture
async def serve(dsn: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Serve]:
    """`eventgraph serve` on the test database, publishing to a stream of its own."""
    stream = private_stream_key()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "REDIS_URL": redis_url,
        "EVENTGRAPH_JWT_SECRET": SECRET,
        "EVENTGRAPH_BROKER_STREAM": stream,
        "EVENTGRAPH_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
        "EVENTGRAPH_DATA_DIR": str(tmp_path / "data"),
    }
    log = tmp_path / "serve.log"
    process = ServeProcess(env, log, "--log-level", "info")
    try:
        await process.started(60)
        yield Serve(process, process.port, log)
    finally:
        await asyncio.to_thread(process.kill)
        client = redis.from_url(redis_url)
        await client.delete(stream)
        await client.aclose()


async def lock_waiters(admin: asyncpg.Connection) -> int:
    return int(
        await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
    )


async def wait_exit(process: asyncio.subprocess.Process, bound: float) -> int | None:
    """The exit status, or None if it still runs after `bound` seconds (a hang)."""
    try:
        return await asyncio.wait_for(process.wait(), bound)
    except TimeoutError:
        return None


async def test_sigterm_under_load_closes_sockets_finishes_the_request_in_flight_and_exits(
    serve: Serve, dsn: str
) -> None:
    base = f"http://127.0.0.1:{serve.port}"
    headers = {"Authorization": f"Bearer {serve.token()}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as http:
        created = await http.post("/graphql", json={"query": 'mutation { createOrder(input: {customerId: "cus_1"}) { position } }'})
        assert created.status_code == 200 and "errors" not in created.json(), created.text

        # Open subscriptions, each live.
        sockets = []
        for i in range(3):
            client = GraphQLWS.connect(serve.port)
            ws = await client.__aenter__()
            sockets.append((client, ws))
            assert (await ws.init(serve.token()))["type"] == "connection_ack"
            await ws.subscribe(f"s{i}", EVENTS)
            assert len(await ws.data(f"s{i}", 1)) == 1

        # Every pooled connection stuck behind a lock, and more requests waiting for one.
        admin, monitor = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        await admin.execute("BEGIN")
        await admin.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        stuck = [
            asyncio.create_task(http.post("/graphql", content=EVENTS_QUERY))
            for _ in range(STUCK_REQUESTS)
        ]
        for _ in range(600):
            if await lock_waiters(monitor) >= 10:  # (not `admin`: a transaction sees a snapshot)
                break
            await asyncio.sleep(0.05)
        else:
            activity = await monitor.fetch(
                "SELECT state, wait_event_type, wait_event, left(query, 60) AS query FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            pytest.fail(f"not every connection waits on the lock: {[dict(r) for r in activity]}")

        # A short request in flight: its headers are in, its body is not.
        body = b'{"query":"{ __typename }"}'
        reader, writer = await asyncio.open_connection("127.0.0.1", serve.port)
        writer.write(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        await writer.drain()
        await asyncio.sleep(0.3)  # the server has read the headers and started the request

        sent = time.monotonic()
        serve.process.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)  # it is shutting down now
        writer.write(body[10:])
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), HANG_BOUND)
        writer.close()

        closes = [await asyncio.wait_for(ws.closed(), HANG_BOUND) for _, ws in sockets]
        code = await serve.process.exit_status(HANG_BOUND)
        took = time.monotonic() - sent
        print(f"\nSIGTERM to exit under load: {took:.2f} s (exit status {code})")
        await admin.execute("ROLLBACK")
        await admin.close()
        await monitor.close()
        for client, _ in sockets:
            await client.__aexit__(None, None, None)
        outcomes = await asyncio.gather(*stuck, return_exceptions=True)

    log = serve.log.read_text()
    assert code is not None, "serve still running after SIGTERM:\n" + log[-3000:]
    assert "Traceback" not in log, log[-3000:]  # a cancelled request is not a bug
    assert response.startswith(b"HTTP/1.1 200"), response
    assert response.endswith(b'{"data":{"__typename":"Query"}}'), response
    assert {closed.code for closed in closes} <= {1001, 1012}, closes
    for outcome in outcomes:  # cut at the drain bound: an outage, safe to retry, not a bug
        assert isinstance(outcome, httpx.Response), repr(outcome)
        assert outcome.status_code == 503 and outcome.headers["retry-after"], outcome.text
        assert outcome.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"


STUCK_APP = textwrap.dedent(
    """
    import asyncio, sys
    from service.server import BoundedServer, ServerConfig
    from service.settings import Settings

    async def app(scope, receive, send):
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        while True:  # a shutdown that ignores its cancellation
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass

    config = ServerConfig(app, Settings(shutdown_timeout=1.0), port=int(sys.argv[1]), lifespan="on")
    BoundedServer(config).run()
    """
)


async def test_a_shutdown_that_never_finishes_ends_at_the_bound_with_one_line() -> None:
    port = serving.free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STUCK_APP, str(port), stderr=asyncio.subprocess.PIPE
    )
    try:
        for _ in range(300):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.returncode is None
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        code = await wait_exit(process, 3 * 1.0)
        assert code == 1
        assert process.stderr is not None
        err = await process.stderr.read()
        lines = [line for line in err.decode().splitlines() if "shutdown did not finish" in line]
        assert len(lines) == 1, err.decode()
        assert "within 1 s" in lines[0]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
