"""GET /metrics over real HTTP, parsed with prometheus_client's parser: the series of
CONTRACT.md 7.7 move with real requests, and the shared-state gauges match the database
and Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as redis
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from eventstore.metrics import observe_metrics
from service.container import Services
from service.serving import ServeProcess
from service.settings import Settings
from tests.conftest import Api, serving
from tests.relay_support import private_stream_key
from tests.test_api_orders import ADD, CREATE, data

METRICS_TOKEN = "scrape-me-0123456789"
STREAM_KEY = private_stream_key()

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(
        jwt_secret="test-secret-0123456789abcdef0123456789abcdef",
        run_projections=False,
        run_relay=False,
        redis_url=redis_url,
        broker_stream=STREAM_KEY,
        metrics_token=METRICS_TOKEN,
    )


def samples_of(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples_of(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_needs_the_token_when_one_is_set(api: Api) -> None:
    assert (await api.http.get("/metrics")).status_code == 401
    wrong = await api.http.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert (await scrape(api.http))  # the right one


async def test_request_counters_move_with_requests_by_type_and_code(api: Api) -> None:
    before = await scrape(api.http)
    for _ in range(3):
        await api.gql("{ __typename }")
    await api.gql("{ order(id: \"order-nope\") { id } }", as_=None)  # no token: UNAUTHENTICATED
    order_id = data(await api.gql(CREATE, {"input": {"customerId": "cus_1"}}), "createOrder")["order"]["id"]
    await api.http.post("/graphql", content=b"{not json", headers={"content-type": "application/json"})
    after = await scrape(api.http)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "eventgraph_graphql_requests_total"
    assert moved(requests, operation_type="query", code="OK") == 3
    assert moved(requests, operation_type="query", code="UNAUTHENTICATED") == 1
    assert moved(requests, operation_type="mutation", code="OK") == 1
    assert moved(requests, operation_type="unknown", code="BAD_USER_INPUT") == 1
    assert moved("eventgraph_graphql_request_duration_seconds_count", operation_type="query") == 4
    assert moved("eventgraph_events_appended_total", type="order.created.v2") == 1
    assert moved("eventgraph_append_duration_seconds_count") >= 1
    assert order_id


async def test_metrics_off_serves_no_metrics_and_counts_nothing(dsn: str, settings: Settings) -> None:
    off = dataclasses.replace(settings, metrics=False)
    services = await Services.start(off, dsn)
    try:
        async with serving(create_app(off, services)) as port:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                api = Api(http, off.jwt_secret or "", port)
                before = samples_of(generate_latest(REGISTRY).decode())
                order_id = data(await api.gql(CREATE, {"input": {"customerId": "cus_1"}}), "createOrder")["order"]["id"]
                assert order_id
                after = samples_of(generate_latest(REGISTRY).decode())
                scrape = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    finally:
        observe_metrics(True)  # as every other app of this process has it
        await services.close()
    assert scrape.status_code == 404
    for name, labels in (
        ("eventgraph_graphql_requests_total", {"operation_type": "mutation", "code": "OK"}),
        ("eventgraph_events_appended_total", {"type": "order.created.v2"}),
        ("eventgraph_append_duration_seconds_count", {}),
    ):
        assert value(after, name, **labels) == value(before, name, **labels), name


async def test_shared_state_gauges_match_the_database(api: Api, dsn: str) -> None:
    order_id = data(await api.gql(CREATE, {"input": {"customerId": "cus_1"}}), "createOrder")["order"]["id"]
    for sku in ("A", "B"):
        body = await api.gql(ADD, {"input": {"orderId": order_id, "sku": sku, "quantity": 1, "unitPrice": "1.00"}})
        data(body, "addItem")
    conn = await asyncpg.connect(dsn)
    try:
        head = await conn.fetchval("SELECT max(position) FROM events")
        backlog = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE position > (SELECT coalesce(max(through), 0) FROM outbox_published)"
        )
        await conn.execute(
            "INSERT INTO projection_checkpoints (name, position) VALUES ('orders', 1)"
            " ON CONFLICT (name) DO UPDATE SET position = 1"
        )
    finally:
        await conn.close()
    samples = await scrape(api.http)
    assert head == 3 and backlog == 3  # the relay is off: nothing published
    assert value(samples, "eventgraph_head_position") == head
    assert value(samples, "eventgraph_outbox_backlog") == backlog
    assert value(samples, "eventgraph_projection_position", projection="orders") == 1
    assert value(samples, "eventgraph_projection_lag", projection="orders") == head - 1
    assert value(samples, "eventgraph_projection_lag", projection="wallets") == head  # never ran
    assert value(samples, "eventgraph_db_pool_connections", state="idle") + value(
        samples, "eventgraph_db_pool_connections", state="busy"
    ) >= 1
    assert value(samples, "eventgraph_db_pool_waiters") == 0
    assert ("eventgraph_db_pool_waiters", ()) in samples


async def test_saga_pending_and_dead_letters_are_read_from_redis(api: Api, redis_url: str) -> None:
    client = redis.from_url(redis_url)
    try:
        await client.xgroup_create(STREAM_KEY, "inventory", id="0", mkstream=True)
        await client.xgroup_create(STREAM_KEY, "payments", id="0", mkstream=True)
        for i in range(5):
            await client.xadd(STREAM_KEY, {"event": f"{i}"})
        await client.xreadgroup("inventory", "c1", {STREAM_KEY: ">"}, count=2)  # 2 pending, 3 unread
        read = await client.xreadgroup("payments", "c1", {STREAM_KEY: ">"}, count=5)
        await client.xack(STREAM_KEY, "payments", *[m[0] for m in read[0][1]])  # all done
        await client.xadd(f"{STREAM_KEY}:dead-letter", {"event": "x"})
        samples = await scrape(api.http)
    finally:
        await client.delete(STREAM_KEY, f"{STREAM_KEY}:dead-letter")
        await client.aclose()
    assert value(samples, "eventgraph_saga_pending", group="inventory") == 5
    assert value(samples, "eventgraph_saga_pending", group="payments") == 0
    assert value(samples, "eventgraph_saga_dead_letters") == 1


async def test_websocket_and_subscription_gauges(api: Api) -> None:
    from tests.subscription_support import GraphQLWS

    before = await scrape(api.http)
    async with GraphQLWS.connect(api.port) as ws:
        await ws.init(api.token())
        await ws.subscribe("1", "subscription { events { position } }")
        await ws.send({"id": "2", "type": "subscribe", "payload": {"query": "{ __typename }"}})
        assert (await ws.receive("2"))["type"] == "next"
        during = await scrape(api.http)
    for _ in range(100):  # the server notices the close on its own time
        after = await scrape(api.http)
        if value(after, "eventgraph_websockets_open") == value(before, "eventgraph_websockets_open"):
            break
        await asyncio.sleep(0.05)
    assert value(during, "eventgraph_websockets_open") == value(before, "eventgraph_websockets_open") + 1
    assert value(during, "eventgraph_subscriptions_active") == value(before, "eventgraph_subscriptions_active") + 1
    assert value(after, "eventgraph_websockets_open") == value(before, "eventgraph_websockets_open")
    assert value(after, "eventgraph_subscriptions_active") == value(before, "eventgraph_subscriptions_active")
    requests = "eventgraph_graphql_requests_total"
    assert value(after, requests, operation_type="subscription", code="OK") - value(
        before, requests, operation_type="subscription", code="OK"
    ) == 1
    assert value(after, requests, operation_type="query", code="OK") - value(
        before, requests, operation_type="query", code="OK"
    ) == 1  # the query over the socket


def test_counters_are_summed_over_workers(database_url: str, redis_url: str, tmp_path: Path) -> None:
    """`serve --workers 2`: every scrape, whichever worker answers it, counts all requests."""
    env: dict[str, Any] = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "EVENTGRAPH_JWT_SECRET": "test-secret-0123456789abcdef0123456789abcdef",
        "EVENTGRAPH_DATA_DIR": str(tmp_path),
        "EVENTGRAPH_RUN_PROJECTIONS": "0",
        "EVENTGRAPH_RUN_RELAY": "0",
        "EVENTGRAPH_RUN_SAGA": "0",
    }
    server = ServeProcess(env, tmp_path / "serve.log", "--workers", "2", "--log-level", "warning")
    base = server.url
    try:
        server.wait_healthy()
        for _ in range(40):  # a new connection each: the kernel spreads them over the workers
            with httpx.Client(base_url=base, timeout=10) as http:
                assert http.post("/graphql", json={"query": "{ __typename }"}).status_code == 200
        totals = set()
        for _ in range(6):
            with httpx.Client(base_url=base, timeout=10) as http:
                samples = samples_of(http.get("/metrics").text)
            totals.add(value(samples, "eventgraph_graphql_requests_total", operation_type="query", code="OK"))
        assert totals == {40.0}
    finally:
        server.terminate(within=30)

