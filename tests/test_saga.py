"""The order saga end to end: relay, three consumer groups, real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as redis

from domain.commands import CancelOrder
from domain.order import Order, OrderStatus
from domain.wallet import Wallet
from eventstore import RecordedEvent, Tracking
from readmodels.wallets import WalletProjection
from service.container import Services
from service.saga.reactions import Inventory, Ordering, Payments, Reactions
from service.saga.tracked import TrackedAppends
from service.saga.worker import SAGA_GROUP
from tests.projection_helpers import run_to_head
from tests.relay_support import entries, eventually
from tests.saga_support import (
    consumers_for,
    customer,
    deposit,
    money,
    order,
    place_order,
    product,
    relay_for,
    running,
    saga,
    settled,
    stock,
    wallet,
)


def by_type(events: list[RecordedEvent]) -> dict[str, list[RecordedEvent]]:
    grouped: dict[str, list[RecordedEvent]] = {}
    for event in events:
        grouped.setdefault(event.type, []).append(event)
    return grouped


async def _one_order(
    services: Services, broker: tuple[redis.Redis, str], stocked: dict[str, int], funds: str | None,
    lines: dict[str, tuple[int, str]], *, then: Callable[[], Awaitable[bool]] | None = None,
) -> tuple[Order, list[RecordedEvent]]:
    """Stocks the products, gives cus_1 `funds`, runs the saga until cus_1's order ord_1 of
    `lines` has settled (and `then` holds); the order, and the events its submit caused."""
    client, key = broker
    await stock(services, **stocked)
    if funds is not None:
        await deposit(services, "cus_1", funds)
    async with saga(services, client, key):
        await place_order(services, "ord_1", lines, correlation_id="flow-1")
        done = await settled(services, "ord_1")
        if then is not None:
            await eventually(then)
    return done, await services.reader.read_correlation("flow-1")


async def test_happy_path_reserves_charges_and_completes(services: Services, broker) -> None:
    done, flow = await _one_order(
        services, broker, {"A": 10, "B": 5}, "100.00", {"A": (2, "10.00"), "B": (1, "5.00")},
        then=lambda: _consumed(services, "flow-1", 2),
    )
    assert done.status is OrderStatus.COMPLETED
    a, b = await product(services, "A"), await product(services, "B")
    assert (a.available, a.reserved, a.held, b.available, b.reserved) == (8, 0, {}, 4, 0)
    assert (await wallet(services, "cus_1")).balance == money("75.00")

    assert [(e.type, e.stream_id) for e in flow] == [
        ("order.submitted.v1", "order-ord_1"),
        ("inventory.reserved.v1", "product-A"),
        ("inventory.reserved.v1", "product-B"),
        ("payment.charged.v1", "wallet-cus_1"),
        ("order.completed.v1", "order-ord_1"),
        ("inventory.consumed.v1", "product-A"),
        ("inventory.consumed.v1", "product-B"),
    ]
    submitted, reserved_a, reserved_b, charged, completed, consumed_a, _ = flow
    assert consumed_a.metadata["causation_id"] == str(completed.event_id)
    cause = {e.event_id: e for e in flow}
    assert reserved_a.metadata["causation_id"] == reserved_b.metadata["causation_id"] == str(submitted.event_id)
    assert charged.metadata["causation_id"] == str(reserved_a.event_id)  # the reservation's lead
    assert completed.metadata["causation_id"] == str(charged.event_id)
    assert completed.data == {"payment_id": str(charged.event_id)}
    assert charged.data == {"order_id": "ord_1", "amount": "25.00"}
    assert reserved_b.data == {"order_id": "ord_1", "items": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}]}
    assert all(e.position > cause[_uuid(e.metadata["causation_id"])].position for e in flow[1:])
    assert {e.metadata["service"] for e in flow[1:]} == {"inventory", "payments", "ordering"}


async def _consumed(services: Services, correlation_id: str, count: int) -> bool:
    flow = await services.reader.read_correlation(correlation_id)
    return len([e for e in flow if e.type == "inventory.consumed.v1"]) == count


def _uuid(value: str):  # type: ignore[no-untyped-def]
    from uuid import UUID

    return UUID(value)


async def test_out_of_stock_rejects_the_order_and_reserves_nothing(services: Services, broker) -> None:
    done, flow = await _one_order(services, broker, {"A": 10, "B": 1}, "100.00", {"A": (2, "1.00"), "B": (2, "1.00")})
    assert done.status is OrderStatus.REJECTED and done.rejection_reason == "out_of_stock"
    assert (await product(services, "A")).available == 10 and (await product(services, "A")).version == 1
    assert (await product(services, "B")).available == 1
    assert (await wallet(services, "cus_1")).balance == money("100.00")
    assert [(e.type, e.stream_id) for e in flow] == [
        ("order.submitted.v1", "order-ord_1"),
        ("inventory.reservation.failed.v1", "reservation-ord_1"),
        ("order.rejected.v1", "order-ord_1"),
    ]
    assert flow[1].data == {"order_id": "ord_1", "reason": "out_of_stock", "sku": "B"}


async def test_unknown_product_rejects_the_order(services: Services, broker) -> None:
    done, _ = await _one_order(services, broker, {"A": 10}, None, {"A": (1, "1.00"), "NOPE": (1, "1.00")})
    assert done.status is OrderStatus.REJECTED and done.rejection_reason == "unknown_product"
    assert (await product(services, "A")).available == 10


async def test_insufficient_funds_releases_the_reservation_and_cancels(services: Services, broker) -> None:
    done, flow = await _one_order(
        services, broker, {"A": 10, "B": 5}, "20.00", {"A": (2, "10.00"), "B": (1, "5.00")},
        # compensation runs beside the cancellation: wait for the stock to come back
        then=lambda: _available_is(services, A=10, B=5),
    )
    assert done.status is OrderStatus.CANCELLED and done.cancellation_reason == "payment_failed"
    assert (await wallet(services, "cus_1")).balance == money("20.00")
    kinds = by_type(flow)
    assert [e.data for e in kinds["payment.failed.v1"]] == [{"order_id": "ord_1", "reason": "insufficient_funds"}]
    failed = kinds["payment.failed.v1"][0]
    assert sorted(e.stream_id for e in kinds["inventory.released.v1"]) == ["product-A", "product-B"]
    assert all(e.metadata["causation_id"] == str(failed.event_id) for e in kinds["inventory.released.v1"])
    assert kinds["order.cancelled.v1"][0].metadata["causation_id"] == str(failed.event_id)
    assert (await product(services, "A")).held == {}


async def _available_is(services: Services, **expected: int) -> bool:
    actual = {sku: (await product(services, sku)).available for sku in expected}
    return actual == expected


async def test_duplicate_delivery_of_every_message_changes_nothing(services: Services, broker) -> None:
    client, key = broker
    await stock(services, A=10, B=5)
    await deposit(services, "cus_1", "20.00")
    await deposit(services, "cus_2", "100.00")
    async with saga(services, client, key) as consumers:
        await place_order(services, "ord_1", {"A": (2, "10.00"), "B": (1, "5.00")})  # fails payment
        await place_order(services, "ord_2", {"A": (1, "10.00")}, customer_id="cus_2")
        await place_order(services, "ord_3", {"B": (9, "1.00")})  # out of stock
        for order_id in ("ord_1", "ord_2", "ord_3"):
            await settled(services, order_id)
        await eventually(lambda: _available_is(services, A=9, B=5))
        await eventually(lambda: _reserved_is(services, A=0, B=0))
        head = await services.reader.head_position()
        snapshot = await _state(services)
        published = await client.xrange(key)
        handled = sum(c.handled for c in consumers)
        for _, fields in published:  # the relay "published everything twice"
            await client.xadd(key, fields)
        await eventually(lambda: _handled_is(consumers, handled + len(published)))  # one group reads each once
    assert await services.reader.head_position() == head
    assert await _state(services) == snapshot


async def _reserved_is(services: Services, **expected: int) -> bool:
    actual = {sku: (await product(services, sku)).reserved for sku in expected}
    return actual == expected


async def _handled_is(consumers, count: int) -> bool:  # type: ignore[no-untyped-def]
    return sum(c.handled for c in consumers) >= count


async def _state(services: Services) -> tuple[object, ...]:
    a, b = await product(services, "A"), await product(services, "B")
    w1, w2 = await wallet(services, "cus_1"), await wallet(services, "cus_2")
    orders = [(await order(services, o)).status for o in ("ord_1", "ord_2", "ord_3")]
    return (a.available, a.held, b.available, b.held, w1.balance, w2.balance, orders)


async def test_concurrent_orders_never_oversell(services: Services, broker) -> None:
    client, key = broker
    await stock(services, A=10)
    for n in range(20):
        await deposit(services, f"cus_{n}", "10.00")
    async with saga(services, client, key):
        await asyncio.gather(
            *(place_order(services, f"ord_{n}", {"A": (1, "1.00")}, customer_id=f"cus_{n}") for n in range(20))
        )
        statuses = [(await settled(services, f"ord_{n}")).status for n in range(20)]
        await eventually(lambda: _reserved_is(services, A=0))
    assert statuses.count(OrderStatus.COMPLETED) == 10
    assert statuses.count(OrderStatus.REJECTED) == 10
    a = await product(services, "A")
    assert a.available == 0 and a.held == {} and a.version == 1 + 10 + 10  # reserved, consumed


class _Stalls(Reactions):
    """A context whose process dies mid-message: before or after the reaction commits."""

    def __init__(self, inner: Reactions, *, after_commit: bool) -> None:
        super().__init__(inner._tracked)
        self.inner, self.after_commit, self.stalled = inner, after_commit, asyncio.Event()
        self.group, self.handles = inner.group, inner.handles  # type: ignore[misc]

    async def handle(self, event: RecordedEvent) -> None:
        if self.after_commit:
            await self.inner.handle(event)
        self.stalled.set()
        await asyncio.Event().wait()  # never acknowledged: the test kills this consumer


@pytest.mark.parametrize("after_commit", [False, True])
async def test_a_consumer_killed_mid_message_is_taken_over(services: Services, broker, after_commit: bool) -> None:
    client, key = broker
    await stock(services, A=10)
    await deposit(services, "cus_1", "100.00")
    tracked = TrackedAppends(services.appender, services.reader)
    stalling = _Stalls(Payments(tracked), after_commit=after_commit)
    doomed = consumers_for(services, client, key, reactions=[stalling])[0]
    async with saga(services, client, key, reactions=[Inventory(tracked), Ordering(tracked)]):
        stop_doomed = asyncio.Event()
        doomed_task = asyncio.create_task(doomed.run(stop_doomed))
        await place_order(services, "ord_1", {"A": (2, "10.00")})
        await asyncio.wait_for(stalling.stalled.wait(), 20)
        doomed_task.cancel()  # killed mid-message
        with contextlib.suppress(asyncio.CancelledError):
            await doomed_task
        pending = await client.xpending(key, "payments")
        # its message stays pending (and, when the kill lands between a read and its
        # acknowledgement, the other messages of that read too: the successor takes all)
        assert pending["pending"] >= 1
        successor = consumers_for(services, client, key, reactions=[Payments(tracked)], claim_idle=0.3)[0]
        async with running(successor):
            done = await settled(services, "ord_1")
            await eventually(lambda: _no_pending(client, key, "payments"))
    assert done.status is OrderStatus.COMPLETED
    assert (await wallet(services, "cus_1")).balance == money("80.00")  # charged once
    charges = [e for e in await services.reader.read_stream("wallet-cus_1") if e.type == "payment.charged.v1"]
    assert len(charges) == 1


async def _no_pending(client: redis.Redis, key: str, group: str) -> bool:
    return (await client.xpending(key, group))["pending"] == 0


async def test_events_published_before_the_consumers_start_are_handled(services: Services, broker) -> None:
    client, key = broker
    await stock(services, A=3)
    await deposit(services, "cus_1", "5.00")
    async with running(relay_for(services, client, key)):
        await place_order(services, "ord_1", {"A": (1, "5.00")})
        await eventually(lambda: _published(client, key, 1))
    async with running(*consumers_for(services, client, key), relay_for(services, client, key)):
        done = await settled(services, "ord_1")
        # the relay publishes the completion after the order settled in the store
        await eventually(lambda: _published_type(client, key, "order.completed.v1"))
    assert done.status is OrderStatus.COMPLETED


async def _published_type(client: redis.Redis, key: str, event_type: str) -> bool:
    return event_type in [e["event_type"] for e in await entries(client, key)]


async def _published(client: redis.Redis, key: str, at_least: int) -> bool:
    return len([e for e in await entries(client, key) if e["event_type"] == "order.submitted.v1"]) >= at_least


async def test_idle_members_with_nothing_pending_are_forgotten(services: Services, broker) -> None:
    client, key = broker
    tracked = TrackedAppends(services.appender, services.reader)
    [gone, busy, current] = consumers_for(
        services, client, key, reactions=[Ordering(tracked), Ordering(tracked), Ordering(tracked)]
    )
    await client.xgroup_create(key, "ordering", id="0", mkstream=True)
    first, second = await client.xadd(key, {"event": b"{}"}), await client.xadd(key, {"event": b"{}"})
    await client.xreadgroup("ordering", busy.name, {key: ">"}, count=1)  # busy keeps its message pending
    await client.xreadgroup("ordering", gone.name, {key: ">"}, count=1)
    await client.xack(key, "ordering", second)  # gone finished its work
    assert await current.forget_idle_members(idle=0) == [gone.name]
    names = {m["name"].decode() for m in await client.xinfo_consumers(key, "ordering")}
    assert names == {busy.name}
    assert [p["message_id"] for p in await client.xpending_range(key, "ordering", "-", "+", 10)] == [first]


async def test_a_customer_cancelling_mid_flow_gets_the_stock_back_and_pays_nothing(services: Services, broker) -> None:
    client, key = broker
    await stock(services, A=5)
    await deposit(services, "cus_1", "100.00")
    tracked = TrackedAppends(services.appender, services.reader)
    async with saga(services, client, key, reactions=[Inventory(tracked)]):
        await place_order(services, "ord_1", {"A": (2, "1.00")})
        await eventually(lambda: _reserved_is(services, A=2))
        await services.execute(customer(), CancelOrder(order_id="ord_1", reason="changed my mind"))
        await eventually(lambda: _reserved_is(services, A=0))
    assert (await product(services, "A")).available == 5
    async with saga(services, client, key):
        await eventually(lambda: _wallet_settled(services, "ord_1"))
    done = await order(services, "ord_1")
    assert done.status is OrderStatus.CANCELLED and done.cancellation_reason == "changed my mind"
    w = await wallet(services, "cus_1")
    assert w.balance == money("100.00") and w.settled == {"ord_1": False}


async def _wallet_settled(services: Services, order_id: str) -> bool:
    return order_id in (await wallet(services, "cus_1")).settled


async def test_an_order_cancelled_before_its_reservation_holds_nothing(services: Services, broker) -> None:
    client, key = broker
    await stock(services, A=5)
    await place_order(services, "ord_1", {"A": (2, "1.00")})
    await services.execute(customer(), CancelOrder(order_id="ord_1", reason="too slow"))
    async with saga(services, client, key) as consumers:
        await eventually(lambda: _handled_is(consumers, 5))  # the saga's group saw all five events
    a = await product(services, "A")
    assert (a.available, a.reserved, a.version) == (5, 0, 1)


async def test_an_order_cancelled_after_its_charge_is_refunded(services: Services, broker, dsn: str) -> None:
    """The customer's cancel lands between the charge and the completion: the charge comes
    back, the stock is released, and the order stays cancelled."""
    client, key = broker
    await stock(services, A=10)
    await deposit(services, "cus_1", "100.00")
    tracked = TrackedAppends(services.appender, services.reader)
    async with saga(services, client, key, reactions=[Inventory(tracked), Payments(tracked)]):
        await place_order(services, "ord_1", {"A": (2, "10.00")})
        await eventually(lambda: _charged(services, "cus_1", "ord_1"))
        await services.execute(customer("cus_1"), CancelOrder(order_id="ord_1", reason="changed my mind"))
        await eventually(lambda: _refunded(services, "cus_1"))
        await eventually(lambda: _released(services, "A", 10))
    async with saga(services, client, key):
        await eventually(lambda: _caught_up(client, key, SAGA_GROUP))
    assert (await order(services, "ord_1")).status is OrderStatus.CANCELLED
    paid = await wallet(services, "cus_1")
    assert paid.balance == money("100.00") and paid.charged == {}
    history = [e.type for e in await services.reader.read_stream("wallet-cus_1")]
    assert history == ["funds.deposited.v1", "payment.charged.v1", "payment.refunded.v1"]
    await run_to_head(dsn, WalletProjection())
    [view] = (await services.read_models.wallets.by_customers(["cus_1"])).values()
    assert (str(view.balance), view.version) == ("100.00", paid.version)


async def _charged(services: Services, customer_id: str, order_id: str) -> bool:
    return order_id in (await wallet(services, customer_id)).charged


async def _refunded(services: Services, customer_id: str) -> bool:
    events = await services.reader.read_stream(f"wallet-{customer_id}")
    return any(e.type == "payment.refunded.v1" for e in events)


async def _released(services: Services, sku: str, available: int) -> bool:
    held = await product(services, sku)
    return held.available == available and not held.held


async def _caught_up(client: redis.Redis, key: str, group: str) -> bool:
    """The group has been handed every entry of the stream and acknowledged them all."""
    last = (await client.xinfo_stream(key))["last-generated-id"]
    for info in await client.xinfo_groups(key):
        if info["name"] in (group, group.encode()):
            return bool(info["pending"] == 0 and info["last-delivered-id"] == last)
    return False


async def test_a_reaction_that_raises_after_emitting_leaves_the_kept_wallets_as_they_were(services: Services) -> None:
    """The saga's appends take the same steps as stream commands: a decision that fails
    after emitting changes neither the store nor the state kept for the next reaction."""
    tracked = TrackedAppends(services.appender, services.reader)
    streams = {"wallet-cus_k": lambda: Wallet("cus_k")}

    def deposit(aggregates: dict[str, Any]) -> list[Any]:
        aggregates["wallet-cus_k"].deposit("5.00", "USD")
        return []

    def deposit_then_fail(aggregates: dict[str, Any]) -> list[Any]:
        deposit(aggregates)
        raise RuntimeError("failed after emitting")

    await tracked.react(Tracking("test", "m1"), {}, streams, deposit)
    with pytest.raises(RuntimeError):
        await tracked.react(Tracking("test", "m2"), {}, streams, deposit_then_fail)
    kept = tracked.aggregates.kept("wallet-cus_k")
    assert kept is not None and kept.version == 1 and kept.balance == Decimal("5.00")  # type: ignore[attr-defined]
    await tracked.react(Tracking("test", "m3"), {}, streams, deposit)
    wallet = await tracked.aggregates.load("wallet-cus_k", lambda: Wallet("cus_k"))
    assert (wallet.version, wallet.balance) == (2, Decimal("10.00"))
    assert [e.version for e in await services.reader.read_stream("wallet-cus_k")] == [1, 2]
