"""The saga running for real in a test: the relay and the saga's consumer on a private stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import redis.asyncio as redis

from domain.commands import AddItem, CreateOrder, DepositFunds, RegisterProduct, SubmitOrder
from domain.order import Order, OrderStatus, order_stream
from domain.product import Product, product_stream
from domain.wallet import Wallet, wallet_stream
from service.container import Services, build_upcasters
from service.context import Principal, RequestContext, Role
from service.relay import OutboxRelay
from service.saga.consumer import StreamConsumer
from service.saga.reactions import Reactions
from service.saga.tracked import TrackedAppends
from service.saga.worker import saga_consumer
from tests.relay_support import eventually

STAFF = Principal("staff_1", Role.STAFF)


def staff() -> RequestContext:
    return RequestContext.new(STAFF)


def customer(sub: str = "cus_1", correlation_id: str | None = None) -> RequestContext:
    return RequestContext.new(Principal(sub, Role.CUSTOMER), correlation_id)


def consumers_for(
    services: Services, client: redis.Redis, key: str, *, claim_idle: float = 0.5,
    reactions: list[Reactions] | None = None,
) -> list[StreamConsumer]:
    """The saga's consumer as `serve` runs it (every context in one group); given
    `reactions`, a consumer for each, in its context's own group (to stop one apart)."""
    options: dict[str, Any] = {"claim_idle": claim_idle, "block_ms": 100}
    if reactions is not None:
        return [StreamConsumer(client, r, stream_key=key, **options) for r in reactions]
    tracked = TrackedAppends(services.appender, services.reader)
    return [saga_consumer(client, [r(tracked) for r in services.modules.reactions], key, **options)]


@contextlib.asynccontextmanager
async def running(*runnables: OutboxRelay | StreamConsumer) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in runnables]
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)


def relay_for(services: Services, client: redis.Redis, key: str) -> OutboxRelay:
    return OutboxRelay(services.dsn, client, build_upcasters(), stream_key=key, poll_interval=0.2)


@contextlib.asynccontextmanager
async def saga(
    services: Services, client: redis.Redis, key: str, *, reactions: list[Reactions] | None = None
) -> AsyncIterator[list[StreamConsumer]]:
    """The relay and a consumer per reaction (every reaction of the saga, by default), running."""
    consumers = consumers_for(services, client, key, reactions=reactions)
    async with running(relay_for(services, client, key), *consumers):
        yield consumers


async def stock(services: Services, **products: int) -> None:
    for sku, quantity in products.items():
        await services.execute(
            staff(), RegisterProduct(sku=sku, name=f"Product {sku}", price="1.00", initial_stock=quantity)
        )


async def deposit(services: Services, customer_id: str, amount: str) -> None:
    await services.execute(staff(), DepositFunds(customer_id=customer_id, amount=amount))


async def place_order(
    services: Services, order_id: str, lines: dict[str, tuple[int, str]], *, customer_id: str = "cus_1",
    correlation_id: str | None = None,
) -> None:
    """Create, fill and submit an order; the submit runs under `correlation_id`."""
    await services.execute(customer(customer_id), CreateOrder(customer_id=customer_id, order_id=order_id))
    for sku, (quantity, price) in lines.items():
        await services.execute(
            customer(customer_id), AddItem(order_id=order_id, sku=sku, quantity=quantity, unit_price=price)
        )
    await services.execute(customer(customer_id, correlation_id), SubmitOrder(order_id=order_id))


async def order(services: Services, order_id: str) -> Order:
    return await services.commands.aggregates.load(order_stream(order_id), lambda: Order(order_id))


async def product(services: Services, sku: str) -> Product:
    return await services.commands.aggregates.load(product_stream(sku), lambda: Product(sku))


async def wallet(services: Services, customer_id: str) -> Wallet:
    return await services.commands.aggregates.load(wallet_stream(customer_id), lambda: Wallet(customer_id))


async def settled(services: Services, order_id: str, within: float = 30.0) -> Order:
    """The order once the saga has taken it out of SUBMITTED."""

    async def done() -> bool:
        return (await order(services, order_id)).status is not OrderStatus.SUBMITTED

    await eventually(done, within)
    return await order(services, order_id)


def money(value: str) -> Decimal:
    return Decimal(value)
