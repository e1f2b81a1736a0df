"""Outages through the API, on a PostgreSQL of the test's own that it stops and starts:
requests fail fast with SERVICE_UNAVAILABLE (HTTP 503 with Retry-After), /healthz tells
the database from the broker, and the service recovers by itself."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from service.container import Services
from service.database import migrate
from service.settings import Settings
from tests.conftest import Api, truncate_all
from tests.private_postgres import PrivatePostgres, free_port, private_postgres
from tests.subscription_support import GraphQLWS
from tests.test_api_failures import serving

CREATE = 'mutation { createOrder(input: {customerId: "cus_1"}) { order { id } position } }'


@pytest.fixture(scope="module")
def restartable() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        async def create() -> None:
            conn = await asyncpg.connect(server.url())
            try:
                await conn.execute("CREATE DATABASE eventgraph")
            finally:
                await conn.close()

        asyncio.run(create())
        migrate(server.url("eventgraph"))
        yield server


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, pool_size=3, pool_timeout=1.0)


@pytest.fixture
async def services(restartable: PrivatePostgres, settings: Settings) -> AsyncIterator[Services]:
    await truncate_all(restartable.url("eventgraph"))
    services = await Services.start(settings, restartable.url("eventgraph"))
    try:
        yield services
    finally:
        await services.close()


def assert_unavailable(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    body = response.json()
    assert {e["extensions"]["code"] for e in body["errors"]} == {"SERVICE_UNAVAILABLE"}
    assert all(value is None for value in (body.get("data") or {}).values())


async def test_a_database_restart(api: Api, restartable: PrivatePostgres) -> None:
    auth = {"Authorization": f"Bearer {api.token()}"}
    created = await api.gql(CREATE)
    order_id = created["data"]["createOrder"]["order"]["id"]
    await asyncio.to_thread(restartable.stop)
    try:
        for query in (CREATE, f'{{ order(id: "{order_id}") {{ id }} }}', "{ headPosition }"):
            assert_unavailable(await api.http.post("/graphql", json={"query": query}, headers=auth))
        health = await api.http.get("/healthz")
        assert (health.status_code, health.json()) == (
            503,
            {"status": "unavailable", "database": "unavailable", "broker": "absent"},
        )
        async with GraphQLWS.connect(api.port) as ws:  # a WebSocket operation, likewise
            assert (await ws.init(api.token()))["type"] == "connection_ack"
            await ws.subscribe("1", CREATE)
            message = await ws.receive("1")
            assert [e["extensions"]["code"] for e in message["payload"]["errors"]] == ["SERVICE_UNAVAILABLE"]
    finally:
        await asyncio.to_thread(restartable.start)
    # back: the very next request works (the pool opens fresh connections)
    again = await api.gql(CREATE)
    assert "errors" not in again and again["data"]["createOrder"]["position"] == "2"
    health = await api.http.get("/healthz")
    assert (health.status_code, health.json()["database"]) == (200, "ok")


async def test_no_connection_freed_up_in_time(api: Api, services: Services) -> None:
    """Every pooled connection held (EVENTGRAPH_POOL_SIZE=3) for longer than
    EVENTGRAPH_POOL_TIMEOUT: requests answer 503, and work again once they are released."""
    held = [services.pool.acquire() for _ in range(3)]
    for slot in held:
        await slot.__aenter__()
    try:
        response = await api.http.post(
            "/graphql", json={"query": "{ headPosition }"}, headers={"Authorization": f"Bearer {api.token()}"}
        )
        assert_unavailable(response)
    finally:
        for slot in held:
            await slot.__aexit__(None, None, None)
    assert (await api.gql("{ headPosition }"))["data"] == {"headPosition": "0"}


async def test_healthz_reports_the_broker_without_failing_on_it(
    services: Services, settings: Settings, redis_url: str
) -> None:
    for broker_url, state in ((redis_url, "ok"), (f"redis://127.0.0.1:{free_port()}/0", "unavailable")):
        async with serving(dataclasses.replace(settings, redis_url=broker_url), services) as http:
            health = await http.get("/healthz")
            assert (health.status_code, health.json()) == (
                200,
                {"status": "ok", "database": "ok", "broker": state},
            )


async def test_a_broker_out_of_reach_is_service_unavailable_too() -> None:
    """For request paths that need Redis: its connection errors are coded as an outage."""
    from graphql import GraphQLError

    from api.errors import coded
    from service.broker import redis_client

    client = redis_client(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(Exception) as caught:
            await client.ping()
    finally:
        await client.aclose()
    error = coded(GraphQLError("ping", original_error=caught.value), "cid")
    assert error.extensions == {"code": "SERVICE_UNAVAILABLE"}
    assert "redis" not in error.message.lower() and "6379" not in error.message
