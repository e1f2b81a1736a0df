"""What each context does with the events it hears; the rules themselves live in domain/.

Every reaction is tracked under (its context, the event's id), so a redelivered
event, or one the relay published twice, changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from domain.aggregate import DomainEvent
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


Reaction = Callable[[Any, RecordedEvent, Tracking, dict[str, Any]], Awaitable[None]]
R = TypeVar("R", bound=Reaction)


def reacts_to(*event_types: type[DomainEvent]) -> Callable[[R], R]:
    """Marks a `Reactions` method as the reaction to these event classes."""

    def mark(method: R) -> R:
        method.__reacts_to__ = event_types  # type: ignore[attr-defined]
        return method

    return mark


class Reactions:
    """One context's consumer: its group name, and a method per event type it reacts to
    (`@reacts_to`); `handles`, the types its consumer reads, is derived from them."""

    group: ClassVar[str]
    handles: ClassVar[frozenset[str]]
    _reactions: ClassVar[dict[str, Reaction]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        reactions: dict[str, Reaction] = {}
        for method in vars(cls).values():
            for event_type in getattr(method, "__reacts_to__", ()):
                if event_type.TYPE in reactions:
                    raise TypeError(f"{cls.__name__} reacts to {event_type.__name__} twice")
                reactions[event_type.TYPE] = method
        if reactions:
            cls._reactions = reactions
            cls.handles = frozenset(reactions)

    def __init__(self, tracked: TrackedAppends) -> None:
        self._tracked = tracked

    async def handle(self, event: RecordedEvent) -> bool:
        """React once in effect; a message processed before is a no-op (False)."""
        react = self._reactions[event.type]
        try:
            await react(self, event, Tracking(self.group, str(event.event_id)), reaction_metadata(event, self.group))
        except AlreadyProcessed:
            return False
        return True

    async def _order(self, order_id: str, to_version: int | None = None) -> Order:
        return await self._tracked.aggregates.load(order_stream(order_id), lambda: Order(order_id), to_version=to_version)


class Inventory(Reactions):
    """Reserves a submitted order's lines (all or none); gives them back when payment
    fails or the order is cancelled; lets them go (consumed) when the order completes."""

    group = "inventory"

    @reacts_to(OrderSubmitted)
    async def _reserve(self, event: RecordedEvent, tracking: Tracking, metadata: dict[str, Any]) -> None:
        order_id, order, lines = await self._order_lines(event)

        def reserve(aggregates: dict[str, Any]) -> list[Extra]:
            if order.status is not OrderStatus.SUBMITTED:
                return []  # cancelled before its turn came: nothing to hold
            products = {sku: aggregates[product_stream(sku)] for sku in lines}
            failure = reserve_order(products, order_id, lines)
            return [Extra(reservation_stream(order_id), failure, order.owner)] if failure else []

        await self._tracked.react(tracking, metadata, _products(lines), reserve)

    @reacts_to(PaymentFailed, OrderCancelled)
    async def _release(self, event: RecordedEvent, tracking: Tracking, metadata: dict[str, Any]) -> None:
        await self._let_go(event, tracking, metadata, release_order)

    @reacts_to(OrderCompleted)
    async def _consume(self, event: RecordedEvent, tracking: Tracking, metadata: dict[str, Any]) -> None:
        await self._let_go(event, tracking, metadata, consume_order)

    async def _let_go(
        self,
        event: RecordedEvent,
        tracking: Tracking,
        metadata: dict[str, Any],
        settle: Callable[[dict[str, Product], str], None],
    ) -> None:
        order_id, _, lines = await self._order_lines(event)

        def let_go(aggregates: dict[str, Any]) -> list[Extra]:
            settle({sku: aggregates[product_stream(sku)] for sku in lines}, order_id)
            return []

        await self._tracked.react(tracking, metadata, _products(lines), let_go)

    async def _order_lines(self, event: RecordedEvent) -> tuple[str, Order, dict[str, int]]:
        order_id = event.data.get("order_id") or order_id_of(event.stream_id)
        order = await self._order(order_id)
        return order_id, order, {sku: line.quantity for sku, line in order.lines.items()}


class Payments(Reactions):
    """Charges the customer's wallet once per reserved order, or records why not; refunds
    an order cancelled after its charge (a customer's cancel that beat the completion)."""

    group = "payments"

    @reacts_to(InventoryReserved)
    async def _charge(self, event: RecordedEvent, tracking: Tracking, metadata: dict[str, Any]) -> None:
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

    @reacts_to(OrderCancelled)
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

    @reacts_to(PaymentCharged)
    async def _complete(self, event: RecordedEvent, tracking: Tracking, metadata: dict[str, Any]) -> None:
        await self._settle(event, tracking, metadata, lambda order: order.complete(payment_id=str(event.event_id)))

    @reacts_to(PaymentFailed)
    async def _cancel(self, event: RecordedEvent, tracking: Tracking, metadata: dict[str, Any]) -> None:
        await self._settle(event, tracking, metadata, lambda order: order.cancel(PAYMENT_FAILED_REASON))

    @reacts_to(InventoryReservationFailed)
    async def _reject(self, event: RecordedEvent, tracking: Tracking, metadata: dict[str, Any]) -> None:
        await self._settle(event, tracking, metadata, lambda order: order.reject(event.data["reason"]))

    async def _settle(
        self, event: RecordedEvent, tracking: Tracking, metadata: dict[str, Any], decide: Callable[[Order], None]
    ) -> None:
        order_id = event.data["order_id"]

        def settle(aggregates: dict[str, Any]) -> list[Extra]:
            order: Order = aggregates[order_stream(order_id)]
            if order.status is not OrderStatus.SUBMITTED:
                return []  # settled already (a customer's cancellation, say): nothing to do
            decide(order)
            return []

        await self._tracked.react(tracking, metadata, {order_stream(order_id): lambda: Order(order_id)}, settle)


def _products(lines: dict[str, int]) -> dict[str, Any]:
    return {product_stream(sku): (lambda sku=sku: Product(sku)) for sku in lines}

