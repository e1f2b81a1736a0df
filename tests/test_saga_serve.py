"""The saga as a user sees it: the real app with its workers (projections, relay, consumers)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as redis

from api.app import create_app
from api.auth import mint_token
from service.serving import in_process
from service.settings import Settings
from tests.relay_support import private_stream_key

SECRET = "test-secret-long-enough-for-hs256-keys"


@pytest.fixture
async def served(dsn: str, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    key = private_stream_key()
    settings = dataclasses.replace(
        Settings(jwt_secret=SECRET), database_url=dsn, redis_url=redis_url, broker_stream=key
    )
    async with in_process(create_app(settings)) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield http
    client = redis.from_url(redis_url)
    await client.delete(key)
    await client.aclose()


async def gql(http: httpx.AsyncClient, query: str, variables: dict, sub: str, role: str, **headers: str) -> dict:  # type: ignore[type-arg]
    token = mint_token(SECRET, sub, role)
    response = await http.post(
        "/graphql", json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}", **headers},
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


async def order_status(http: httpx.AsyncClient, order_id: str, want: str, after: str) -> dict:  # type: ignore[type-arg]
    """Polls the read model (from the submit's position on) until the saga has settled the order."""
    query = "query($id: ID!, $p: String) { order(id: $id, consistentWith: $p) { status cancellationReason version } }"
    for _ in range(600):
        order = (await gql(http, query, {"id": order_id, "p": after}, "cus_1", "customer"))["order"]
        if order["status"] == want:
            return order  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError(f"order {order_id} never became {want}: {order}")


async def test_submit_order_completes_through_the_running_saga(served: httpx.AsyncClient) -> None:
    http = served
    await gql(http, """mutation { registerProduct(input: {sku: "SKU-1", name: "Widget", price: "4.00",
        initialStock: 5}) { position } }""", {}, "staff_1", "staff")
    await gql(http, """mutation { depositFunds(input: {customerId: "cus_1", amount: "10.00"}) { position } }""",
              {}, "staff_1", "staff")
    await gql(http, """mutation { createOrder(input: {orderId: "ord_e2e", customerId: "cus_1"}) { position } }""",
              {}, "cus_1", "customer")
    await gql(http, """mutation { addItem(input: {orderId: "ord_e2e", sku: "SKU-1", quantity: 2,
        unitPrice: "4.00"}) { position } }""", {}, "cus_1", "customer")
    submitted = await gql(http, """mutation { submitOrder(input: {orderId: "ord_e2e"}) { position } }""",
                          {}, "cus_1", "customer", **{"x-correlation-id": "e2e-flow"})
    await order_status(http, "ord_e2e", "COMPLETED", submitted["submitOrder"]["position"])

    trace = (await gql(http, """query { trace(correlationId: "e2e-flow") { type } }""", {}, "staff_1", "staff"))
    assert [e["type"] for e in trace["trace"]][:4] == [
        "order.submitted.v1", "inventory.reserved.v1", "payment.charged.v1", "order.completed.v1",
    ]
    head = (await gql(http, "query { headPosition }", {}, "staff_1", "staff"))["headPosition"]
    read = await gql(
        http,
        """query($p: String) { product(sku: "SKU-1", consistentWith: $p) { available reserved }
           wallet(customerId: "cus_1", consistentWith: $p) { balance { amount } } }""",
        {"p": head}, "staff_1", "staff",
    )
    assert read["wallet"] == {"balance": {"amount": "2.00"}}
    assert read["product"]["available"] == 3 and read["product"]["reserved"] in (0, 2)  # consumed soon after


async def test_a_payment_failure_cancels_the_order(served: httpx.AsyncClient) -> None:
    http = served
    await gql(http, """mutation { registerProduct(input: {sku: "SKU-2", name: "Gadget", price: "4.00",
        initialStock: 5}) { position } }""", {}, "staff_1", "staff")
    await gql(http, """mutation { createOrder(input: {orderId: "ord_poor", customerId: "cus_1"}) { position } }""",
              {}, "cus_1", "customer")
    await gql(http, """mutation { addItem(input: {orderId: "ord_poor", sku: "SKU-2", quantity: 1,
        unitPrice: "4.00"}) { position } }""", {}, "cus_1", "customer")
    submitted = await gql(
        http, """mutation { submitOrder(input: {orderId: "ord_poor"}) { position } }""", {}, "cus_1", "customer"
    )
    order = await order_status(http, "ord_poor", "CANCELLED", submitted["submitOrder"]["position"])
    assert order["cancellationReason"] == "payment_failed"
