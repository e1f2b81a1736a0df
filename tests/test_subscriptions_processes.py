"""Two real `eventgraph serve` processes on one database: a subscription on one sees what is
written through the other, and orderChanged follows the projection whichever process runs it."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from api.auth import mint_token
from service.serving import ServeProcess
from tests.subscription_support import CREATE, EVENTS, GraphQLWS

SECRET = "test-secret-long-enough-for-hs256-keys"
ORDER_CHANGED = "subscription($id: ID!) { orderChanged(id: $id) { id version status lines { sku quantity } total { amount } } }"
ORDER = "query($id: ID!) { order(id: $id) { id version status lines { sku quantity } total { amount } } }"


class Served:
    def __init__(self, port: int) -> None:
        self.port = port
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)

    async def gql(self, query: str, variables: dict, sub: str = "cus_1", role: str = "customer") -> dict:  # type: ignore[type-arg]
        token = mint_token(SECRET, sub, role)
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {token}"}
        )
        body = response.json()
        assert "errors" not in body, body
        return body["data"]  # type: ignore[no-any-return]


def serve_process(dsn: str, redis_url: str, data_dir: Path) -> ServeProcess:
    """`eventgraph serve`, without the relay and the saga (they need a private stream)."""
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "REDIS_URL": redis_url,
        "EVENTGRAPH_JWT_SECRET": SECRET,
        "EVENTGRAPH_DATA_DIR": str(data_dir),
        "EVENTGRAPH_RUN_RELAY": "0",
        "EVENTGRAPH_RUN_SAGA": "0",
    }
    return ServeProcess(env, data_dir / f"serve-{uuid.uuid4().hex[:8]}.log", "--log-level", "warning")


@asynccontextmanager
async def serve(dsn: str, redis_url: str, data_dir: Path) -> AsyncIterator[Served]:
    process = serve_process(dsn, redis_url, data_dir)
    try:
        await asyncio.to_thread(process.wait_healthy)
        served = Served(process.port)
        try:
            yield served
        finally:
            await served.http.aclose()
    finally:
        await asyncio.to_thread(process.terminate, within=20)


async def test_a_subscription_on_one_process_sees_writes_made_through_another(
    dsn: str, redis_url: str, tmp_path: Path
) -> None:
    async with serve(dsn, redis_url, tmp_path) as a, serve(dsn, redis_url, tmp_path) as b:
        async with GraphQLWS.connect(a.port) as ws:
            await ws.send(
                {
                    "type": "connection_init",
                    "payload": {"authorization": f"Bearer {mint_token(SECRET, 'cus_1', 'customer')}"},
                }
            )
            assert (await ws.receive(None))["type"] == "connection_ack"
            await ws.subscribe("events", EVENTS)
            order_id = (await b.gql(CREATE, {"c": "cus_1"}))["createOrder"]["order"]["id"]
            await ws.subscribe("order", ORDER_CHANGED, {"id": order_id})
            (created,) = await ws.data("events", 1)
            assert created["events"]["streamId"] == f"order-{order_id}"
            first_view = (await ws.data("order", 1))[0]["orderChanged"]
            assert first_view["version"] == 1 and first_view["lines"] == []

            for sku in ("A", "B"):
                await b.gql(
                    'mutation($o: ID!, $s: String!) { addItem(input: {orderId: $o, sku: $s, quantity: 2,'
                    ' unitPrice: "1.25"}) { position } }',
                    {"o": order_id, "s": sku},
                )
            added = await ws.data("events", 2)
            assert [d["events"]["version"] for d in added] == [2, 3]
            # one view per projection batch: versions increase, the last one is the order now
            views = [(await ws.data("order", 1))[0]["orderChanged"]]
            while views[-1]["version"] < 3:
                views.append((await ws.data("order", 1))[0]["orderChanged"])
            assert [v["version"] for v in views] == sorted({v["version"] for v in views})
            now = (await a.gql(ORDER, {"id": order_id}))["order"]
            assert views[-1] == now
            assert now["total"]["amount"] == "5.00"
