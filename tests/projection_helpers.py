"""Shared by the read-model tests: order histories, running projections to the head."""

from __future__ import annotations

import random

import asyncpg

from domain.commands import AddItem, CancelOrder, CreateOrder, RemoveItem, SubmitOrder
from eventstore.pool import connect
from readmodels.orders import OrderProjection
from readmodels.projection import Projection
from readmodels.runner import Follower
from readmodels.views import OrderView, order_view
from service.container import Services, build_upcasters
from service.context import Principal, RequestContext, Role

STAFF = RequestContext.new(Principal("staff_1", Role.STAFF))


def customer(sub: str) -> RequestContext:
    return RequestContext.new(Principal(sub, Role.CUSTOMER))


async def random_orders(services: Services, count: int, seed: int = 7) -> list[str]:
    """`count` orders with interleaved adds, removes, submits and cancellations."""
    rng = random.Random(seed)
    ids = []
    for i in range(count):
        result = await services.execute(
            STAFF, CreateOrder(customer_id=f"cus_{i % 3}", currency=rng.choice(["USD", "JPY", "EUR"]))
        )
        ids.append(result.aggregate.id)
    for _ in range(count * 5):
        order_id = rng.choice(ids)
        order = await services.orders.order_at(STAFF, order_id)
        if order.status.value != "DRAFT":
            continue
        roll = rng.random()
        if roll < 0.6 or not order.lines:
            price = "7" if order.currency == "JPY" else rng.choice(["0.10", "0.20", "19.99"])
            sku = f"SKU{rng.randrange(4)}"
            if sku in order.lines:
                price = str(order.lines[sku].unit_price)
            await services.execute(
                STAFF, AddItem(order_id=order_id, sku=sku, quantity=rng.randrange(1, 4), unit_price=price)
            )
        elif roll < 0.75:
            await services.execute(STAFF, RemoveItem(order_id=order_id, sku=rng.choice(list(order.lines))))
        elif roll < 0.9:
            await services.execute(STAFF, SubmitOrder(order_id=order_id))
        else:
            await services.execute(STAFF, CancelOrder(order_id=order_id, reason="changed my mind"))
    return ids


async def run_to_head(dsn: str, projection: Projection | None = None, batch: int = 1000) -> int:
    """Apply batches until the projection has seen the head; returns its checkpoint."""
    projection = projection or OrderProjection()
    follower = Follower(projection, build_upcasters())
    conn = await connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
            projection.checkpoint,
        )
        while True:
            step = await follower.step(conn, batch)
            if not step.more:
                return step.after
    finally:
        await conn.close()


async def aggregate_views(services: Services, ids: list[str]) -> dict[str, OrderView]:
    return {i: order_view(await services.orders.order_at(STAFF, i)) for i in ids}


async def table_rows(dsn: str, suffix: str = "") -> list[asyncpg.Record]:
    """The orders projection's rows, each with its lines (as JSON text)."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(f"SELECT * FROM order_views{suffix} ORDER BY id")
    finally:
        await conn.close()
