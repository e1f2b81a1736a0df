"""Rate limits per caller (CONTRACT 7.3) through real HTTP and WebSocket clients: 429 with
Retry-After and RATE_LIMITED once the burst is spent, callers kept apart, one budget for two
app instances on one Redis, per-process buckets when Redis is away, /healthz never limited."""

from __future__ import annotations

import dataclasses
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from api.app import create_app
from api.auth import mint_token
from service.container import Services
from service.settings import Settings
from tests.conftest import Api, serving
from tests.relay_support import RedisProcess
from tests.subscription_support import EVENTS, GraphQLWS

# A token refills every 100 s: a test never earns one back while it runs.
SLOW = 0.01
BURST = 3
QUERY = {"query": "{ headPosition }"}


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own (runs sharing a Redis never meet), removed after."""
    prefix = f"eventgraph-test:ratelimit:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.from_url(redis_url)
    keys = [key async for key in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def limited(settings: Settings, redis_url: str | None, prefix: str = "eventgraph:ratelimit:") -> Settings:
    return dataclasses.replace(
        settings, rate_limit_rps=SLOW, rate_limit_burst=BURST, redis_url=redis_url, rate_limit_prefix=prefix
    )


@asynccontextmanager
async def client_of(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(create_app(settings, services)) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            http.port = port  # type: ignore[attr-defined]
            yield http


def bearer(settings: Settings, sub: str, role: str = "customer") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings.jwt_secret or '', sub, role)}"}


async def spend(http: httpx.AsyncClient, headers: dict[str, str], count: int) -> None:
    for _ in range(count):
        response = await http.post("/graphql", json=QUERY, headers=headers)
        assert response.status_code == 200 and "errors" not in response.json(), response.text


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"].isdigit() and int(response.headers["retry-after"]) >= 1
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_burst_then_429_with_retry_after_per_caller(
    services: Services, settings: Settings, redis_url: str, prefix: str
) -> None:
    settings = limited(settings, redis_url, prefix)
    cus_1, cus_2 = bearer(settings, "cus_1"), bearer(settings, "cus_2")
    async with client_of(settings, services) as http:
        await spend(http, cus_1, BURST)
        assert_refused(await http.post("/graphql", json=QUERY, headers=cus_1))
        # refused before the body is read: a malformed one is refused the same way
        assert_refused(await http.post("/graphql", content=b"{", headers=cus_1))
        assert_refused(await http.get("/graphql", params=QUERY, headers=cus_1))
        # another subject, and the same subject with another role, have budgets of their own
        await spend(http, cus_2, BURST)
        await spend(http, bearer(settings, "cus_1", "staff"), 1)
        # without a token the caller is the client address
        for _ in range(BURST):
            response = await http.post("/graphql", json={"query": "{ __typename }"})
            assert response.json() == {"data": {"__typename": "Query"}}
        assert_refused(await http.post("/graphql", json={"query": "{ __typename }"}))
        for _ in range(2 * BURST):
            assert (await http.get("/healthz")).status_code == 200
        assert (await http.post("/graphql", json=QUERY, headers=bearer(settings, "cus_3"))).status_code == 200


async def test_two_app_instances_share_one_budget_through_redis(
    services: Services, settings: Settings, redis_url: str, prefix: str
) -> None:
    settings = limited(settings, redis_url, prefix)
    cus_1 = bearer(settings, "cus_1")
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(client_of(settings, services))
        second = await stack.enter_async_context(client_of(settings, services))
        assert first.port != second.port  # type: ignore[attr-defined]
        await spend(first, cus_1, 2)
        await spend(second, cus_1, BURST - 2)
        assert_refused(await second.post("/graphql", json=QUERY, headers=cus_1))
        assert_refused(await first.post("/graphql", json=QUERY, headers=cus_1))
    client = redis.from_url(redis_url)
    try:
        assert await client.pttl(prefix + "customer:cus_1") > 0  # the bucket expires by itself
    finally:
        await client.aclose()


@pytest.mark.parametrize("redis_there", ["unreachable", "not configured"])
async def test_without_redis_each_process_keeps_the_limit(
    services: Services, settings: Settings, redis_there: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0" if redis_there == "unreachable" else None
    settings = limited(settings, url)
    cus_1 = bearer(settings, "cus_1")
    with caplog.at_level(logging.INFO, logger="api.ratelimit"):
        async with client_of(settings, services) as http:
            await spend(http, cus_1, BURST)  # never failed because Redis is away
            assert_refused(await http.post("/graphql", json=QUERY, headers=cus_1))
            await spend(http, bearer(settings, "cus_2"), 1)
    said = [r.getMessage() for r in caplog.records if r.name == "api.ratelimit"]
    assert len(said) == 1, said  # said once, not per request
    assert ("Redis does not answer" if url else "per process (no Redis)") in said[0]


async def test_websocket_subscribe_over_the_limit_gets_an_error_and_the_socket_stays_open(
    services: Services, settings: Settings, redis_url: str, prefix: str
) -> None:
    settings = limited(settings, redis_url, prefix)
    token = mint_token(settings.jwt_secret or "", "ops", "staff")
    async with client_of(settings, services) as http:
        async with GraphQLWS.connect(http.port) as ws:  # type: ignore[attr-defined]
            assert (await ws.init(token))["type"] == "connection_ack"
            for n in range(BURST):
                await ws.subscribe(str(n), EVENTS)
            await ws.subscribe("over", EVENTS)
            refused = await ws.receive("over")
            assert refused["type"] == "error", refused
            [error] = refused["payload"]
            assert error["extensions"]["code"] == "RATE_LIMITED"
            assert error["extensions"]["retryAfter"] >= 1
            await ws.send({"type": "ping"})
            assert (await ws.receive(None))["type"] == "pong"
            # the budget is the caller's: HTTP is refused too, and the subscriptions live on
            assert_refused(await http.post("/graphql", json=QUERY, headers={"Authorization": f"Bearer {token}"}))
            await ws.send({"id": "0", "type": "complete"})
            await ws.send({"type": "ping"})
            assert (await ws.receive(None))["type"] == "pong"


async def test_off_by_default(api: Api, settings: Settings) -> None:
    assert settings.rate_limit_rps == 0
    http = api.http
    headers = bearer(settings, "cus_1")
    await spend(http, headers, 20)


async def test_leases_keep_two_processes_within_the_shared_budget(redis_url: str, prefix: str) -> None:
    """A busy caller's checks go to Redis a lease at a time; what two processes let through
    together stays within the burst plus what the rate refilled plus one lease each."""
    import time

    from api.ratelimit import RateLimited, RateLimiter

    rate, burst = 200.0, 50.0
    settings = Settings(rate_limit_rps=rate, rate_limit_burst=burst, redis_url=redis_url, rate_limit_prefix=prefix)
    limiters = [RateLimiter.from_settings(settings) for _ in range(2)]
    lease = int(rate * 0.05)
    assert lease > 1
    allowed = refused = 0
    started = time.monotonic()
    try:
        for n in range(600):
            try:
                await limiters[n % 2].check("customer:cus_1")  # type: ignore[union-attr]
                allowed += 1
            except RateLimited:
                refused += 1
        elapsed = time.monotonic() - started
    finally:
        for limiter in limiters:
            await limiter.close()  # type: ignore[union-attr]
    assert refused > 0
    assert burst - 2 * lease <= allowed <= burst + rate * elapsed + 2 * lease + 1


async def test_concurrent_checks_of_one_caller_share_a_lease_within_a_generous_limit(
    redis_url: str, prefix: str
) -> None:
    """300 checks at once, with 2,000 to spare: none refused (each used to reserve a lease
    of its own, 300 x 50, and the budget ran out for requests that never came)."""
    import asyncio

    from api.ratelimit import RateLimiter

    settings = Settings(rate_limit_rps=1000, redis_url=redis_url, rate_limit_prefix=prefix)
    limiter = RateLimiter.from_settings(settings)
    assert limiter is not None
    try:
        outcomes = await asyncio.gather(*(limiter.check("staff:bench") for _ in range(300)), return_exceptions=True)
    finally:
        await limiter.close()
    assert [o for o in outcomes if o is not None] == []


async def test_redis_going_away_mid_run_and_coming_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No check fails while Redis is away (the process counts alone, and says so once);
    once Redis answers again the shared bucket takes over where it was."""
    import asyncio

    from api.ratelimit import RateLimiter

    monkeypatch.setattr("api.ratelimit.RETRY_REDIS_AFTER", 0.2)
    server = RedisProcess(tmp_path)
    server.start()
    settings = Settings(rate_limit_rps=SLOW, rate_limit_burst=10, redis_url=server.url, rate_limit_prefix="t:")
    limiter = RateLimiter.from_settings(settings)
    assert limiter is not None
    try:
        with caplog.at_level(logging.INFO, logger="api.ratelimit"):
            for _ in range(2):
                await limiter.check("customer:cus_1")
            server.stop()
            for _ in range(3):
                await limiter.check("customer:cus_1")
            server.start()  # with its data (append-only file)
            await asyncio.sleep(0.3)
            await limiter.check("customer:cus_1")
        client = redis.from_url(server.url)
        try:
            pttl = await client.pttl("t:customer:cus_1")
        finally:
            await client.aclose()
    finally:
        await limiter.close()
        server.stop()
    said = [r.getMessage() for r in caplog.records if r.name == "api.ratelimit"]
    assert len(said) == 2 and "does not answer" in said[0] and "shared through Redis again" in said[1], said
    # three requests in Redis (100 s each): the two before the outage and the one after
    assert 250_000 < pttl <= 301_000
