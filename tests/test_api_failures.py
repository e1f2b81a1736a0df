"""When the database goes away: /healthz says 503 and requests answer SERVICE_UNAVAILABLE.

The app runs on its own database, which the test then drops (terminating its connections),
so the failure is real, not simulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from api.app import create_app
from api.auth import mint_token
from service.container import Services
from service.database import migrate
from service.serving import in_process
from service.settings import Settings
from tests.conftest import _with_database


@contextlib.asynccontextmanager
async def serving(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(create_app(settings, services)) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield http


@pytest.fixture
async def doomed_url(database_url: str) -> AsyncIterator[str]:
    """A migrated database of its own, dropped by the test (or at the end)."""
    name = f"eventgraph_doomed_{uuid.uuid4().hex[:10]}"
    admin = _with_database(database_url, "postgres")
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = _with_database(database_url, name)
    await asyncio.to_thread(migrate, url)
    yield url
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def drop(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    conn = await asyncpg.connect(_with_database(url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def test_database_going_away(
    doomed_url: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """An outage, not a bug: 503 with Retry-After and SERVICE_UNAVAILABLE, nothing internal
    told to the client, and one log line for the whole outage instead of a traceback each."""
    services = await Services.start(settings, doomed_url)
    headers = {"Authorization": f"Bearer {mint_token(settings.jwt_secret or '', 'cus_1', 'customer')}"}
    try:
        async with serving(settings, services) as http:
            healthy = await http.get("/healthz")
            assert (healthy.status_code, healthy.json()) == (
                200,
                {"status": "ok", "database": "ok", "broker": "absent"},
            )
            created = await http.post(
                "/graphql",
                json={"query": 'mutation { createOrder(input: {customerId: "cus_1"}) { position } }'},
                headers=headers,
            )
            assert created.json() == {"data": {"createOrder": {"position": "1"}}}

            caplog.set_level(logging.INFO)
            await drop(doomed_url)

            unhealthy = await http.get("/healthz")
            assert (unhealthy.status_code, unhealthy.json()) == (
                503,
                {"status": "unavailable", "database": "unavailable", "broker": "absent"},
            )
            for query in (
                "{ headPosition }",
                'mutation { createOrder(input: {customerId: "cus_1"}) { position } }',
                "{ a: headPosition b: headPosition }",
            ):
                response = await http.post(
                    "/graphql", json={"query": query}, headers={**headers, "X-Correlation-ID": "cid-503"}
                )
                assert response.status_code == 503
                assert response.headers["retry-after"].isdigit()
                body = response.json()
                assert body["data"] is None
                assert {e["extensions"]["code"] for e in body["errors"]} == {"SERVICE_UNAVAILABLE"}
                for leak in ("asyncpg", "postgres", "Traceback", "eventgraph_doomed"):
                    assert leak not in response.text
            assert not [r for r in caplog.records if r.name == "eventgraph.errors"]
            outage = [r for r in caplog.records if r.name == "eventgraph.outage"]
            assert [(r.levelno, r.getMessage().split(":")[0]) for r in outage] == [
                (logging.WARNING, "database unavailable")
            ]
            # meta fields still answer: the process is up, only the database is gone
            meta = await http.post("/graphql", json={"query": "{ __typename }"})
            assert meta.json() == {"data": {"__typename": "Query"}}
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(services.close(), 10)


async def test_commands_the_database_refuses_leave_the_pool_whole(api, services: Services) -> None:  # type: ignore[no-untyped-def]
    """Issue 12's report: ten cancelOrder calls with a NUL in `reason` used to take every
    pooled connection out of service for good. Each is BAD_USER_INPUT, concurrent
    commands of other orders succeed, and the pool has every slot afterwards."""
    cancel = "mutation($input: CancelOrderInput!) { cancelOrder(input: $input) { streamVersion } }"
    create = 'mutation { createOrder(input: {customerId: "cus_1"}) { order { id } } }'
    order_ids = [(await api.gql(create))["data"]["createOrder"]["order"]["id"] for _ in range(4)]
    bad = [
        api.gql(cancel, {"input": {"orderId": order_ids[0], "reason": "x\u0000y"}})
        for _ in range(3 * services.settings.pool_size // 2)
    ]
    good = [api.gql(cancel, {"input": {"orderId": order_id, "reason": "fine"}}) for order_id in order_ids[1:]]
    answers = await asyncio.gather(*bad, *good)
    for answer in answers[: len(bad)]:
        assert [e["extensions"]["code"] for e in answer["errors"]] == ["BAD_USER_INPUT"], answer
    for answer in answers[len(bad):]:
        assert answer == {"data": {"cancelOrder": {"streamVersion": 2}}}
    assert services.pool.busy == 0
    again = await api.gql(cancel, {"input": {"orderId": order_ids[0], "reason": "now fine"}})
    assert again == {"data": {"cancelOrder": {"streamVersion": 2}}}
