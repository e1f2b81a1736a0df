"""What each context does with the events it hears; the rules themselves live in domain/.

Every reaction is tracked under (its context, the event's id), so a redelivered
event, or one the relay published twice, changes nothing the second time.
"""

from __future__ import annotations

from typing import Any, ClassVar

from domain.order import (
    Order,
    OrderCancelled,
    OrderCompleted,
    OrderStatus,
    OrderSubmitted,
    order_id_of,
    order_stream,
)
from domain.product import (
    InventoryReservationFailed,
    InventoryReserved,
    Product,
    consume_order,
    product_stream,
    release_order,
    reservation_stream,
    reserve_order,
)
from domain.wallet import PaymentCharged, PaymentFailed, Wallet, wallet_stream
from eventstore import AlreadyProcessed, RecordedEvent, Tracking
from service.saga.tracked import Extra, TrackedAppends, reaction_metadata

PAYMENT_FAILED_REASON = "payment_failed"


class Reactions:
    """One context's consumer: its group name and the event types it reacts to."""

    group: ClassVar[str]
    handles: ClassVar[frozenset[str]]

    def __init__(self, tracked: TrackedAppends) -> None:
        self._tracked = tracked

    async def handle(self, event: RecordedEvent) -> bool:
        """React once in effect; a message processed before is a no-op (False)."""
        try:
            await self._react(event, Tracking(self.group, str(event.event_id)), reaction_metadata(event, self.group))
        except AlreadyProcessed:
            return False
        return True

    async def _react(self, event: RecordedEvent, tracking: Tracking, metadata: dict[str, Any]) -> None:
        raise NotImplementedError

    async def _order(self, order_id: str, to_version: int | None = None) -> Order:
        return await self._tracked.aggregates.load(order_stream(order_id), lambda: Order(order_id), to_version=to_version)


class Inventory(Reactions):
    """Reserves a submitted order's lines (all or none); gives them back when payment
    fails or the order is cancelled; lets them go (consumed) when the order completes."""

    group = "inventory"
    handles = frozenset(
        {OrderSubmitted.TYPE, PaymentFailed.TYPE, OrderCancelled.TYPE, OrderCompleted.TYPE}
    )

    async def _react(self, event: RecordedEvent, tracking: Tracking, metadata: dict[str, Any]) -> None:
        order_id = event.data.get("order_id") or order_id_of(event.stream_id)
        order = await self._order(order_id)
        lines = {sku: line.quantity for sku, line in order.lines.items()}

        def reserve(aggregates: dict[str, Any]) -> list[Extra]:
            if order.status is not OrderStatus.SUBMITTED:
                return []  # cancelled before its turn came: nothing to hold
            products = {sku: aggregates[product_stream(sku)] for sku in lines}
            failure = reserve_order(products, order_id, lines)
            return [Extra(reservation_stream(order_id), failure, order.owner)] if failure else []

        def let_go(aggregates: dict[str, Any]) -> list[Extra]:
            settle = consume_order if event.type == OrderCompleted.TYPE else release_order
            settle({sku: aggregates[product_stream(sku)] for sku in lines}, order_id)
            return []

        decide = reserve if event.type == OrderSubmitted.TYPE else let_go
        await self._tracked.react(tracking, metadata, _products(lines), decide)


class Payments(Reactions):
    """Charges the customer's wallet once per reserved order, or records why not; refunds
    an order cancelled after its charge (a customer's cancel that beat the completion)."""

    group = "payments"
    handles = frozenset({InventoryReserved.TYPE, OrderCancelled.TYPE})

    async def _react(self, event: RecordedEvent, tracking: Tracking, metadata: dict[str, Any]) -> None:
        if event.type == OrderCancelled.TYPE:
            await self._close(event, tracking, metadata)
            return
        reserved = InventoryReserved.from_data(event.data)
        if not reserved.is_lead(event.stream_id):
            return  # the reservation's other products: the lead event stands for them
        order = await self._order(reserved.order_id)
        if not order.exists:
            return  # not an order of this store (a foreign message on a shared stream)
        stream = wallet_stream(order.customer_id)

        def pay(aggregates: dict[str, Any]) -> list[Extra]:
            wallet: Wallet = aggregates[stream]
            payable = order.status is OrderStatus.SUBMITTED
            wallet.pay_for_order(order.id, order.total, order.currency, payable=payable)
            return []

        await self._tracked.react(tracking, metadata, {stream: lambda: Wallet(order.customer_id)}, pay)

    async def _close(self, event: RecordedEvent, tracking: Tracking, metadata: dict[str, Any]) -> None:
        order = await self._order(order_id_of(event.stream_id))
        if not order.submitted:
            return  # cancelled as a draft: never reserved, never charged
        stream = wallet_stream(order.customer_id)

        def close(aggregates: dict[str, Any]) -> list[Extra]:
            aggregates[stream].close_order(order.id)
            return []

        await self._tracked.react(tracking, metadata, {stream: lambda: Wallet(order.customer_id)}, close)


class Ordering(Reactions):
    """Settles a submitted order: completed when paid, rejected or cancelled otherwise."""

    group = "ordering"
    handles = frozenset({PaymentCharged.TYPE, PaymentFailed.TYPE, InventoryReservationFailed.TYPE})

    async def _react(self, event: RecordedEvent, tracking: Tracking, metadata: dict[str, Any]) -> None:
        order_id = event.data["order_id"]

        def settle(aggregates: dict[str, Any]) -> list[Extra]:
            order: Order = aggregates[order_stream(order_id)]
            if order.status is not OrderStatus.SUBMITTED:
                return []  # settled already (a customer's cancellation, say): nothing to do
            if event.type == PaymentCharged.TYPE:
                order.complete(payment_id=str(event.event_id))
            elif event.type == PaymentFailed.TYPE:
                order.cancel(PAYMENT_FAILED_REASON)
            else:
                order.reject(event.data["reason"])
            return []

        await self._tracked.react(tracking, metadata, {order_stream(order_id): lambda: Order(order_id)}, settle)


def _products(lines: dict[str, int]) -> dict[str, Any]:
    return {product_stream(sku): (lambda sku=sku: Product(sku)) for sku in lines}


ALL_REACTIONS: tuple[type[Reactions], ...] = (Inventory, Payments, Ordering)
