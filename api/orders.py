"""Order commands (mutations) and time travel from the event store."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry

from api.commands import command_mutation
from api.context import Info
from api.inputs import flat_input
from api.readmodels import ReadModelQuery
from api.types import Order, OrderPayload
from domain.commands import AddItem, CancelOrder, CreateOrder, RemoveItem, SubmitOrder
from domain.order import ORDER_EVENTS
from readmodels.orders import OrderProjection
from readmodels.views import order_view
from service.module import Module
from service.orders import ORDER_HANDLERS, OrderResult
from service.saga.reactions import Ordering


def payload(result: OrderResult) -> OrderPayload:
    return OrderPayload(
        order=Order.of(order_view(result.aggregate)),
        stream_version=result.stream_version,
        position=str(result.position),
        recorded=result.events,
    )


@flat_input
@strawberry.input
class CreateOrderInput:
    customer_id: strawberry.ID
    order_id: strawberry.ID | None = None
    currency: str | None = "USD"
    idempotency_key: str | None = None


@flat_input
@strawberry.input
class AddItemInput:
    order_id: strawberry.ID
    sku: str
    quantity: int
    unit_price: Decimal
    discount: Decimal | None = Decimal("0")
    expected_version: int | None = None
    idempotency_key: str | None = None


@flat_input
@strawberry.input
class RemoveItemInput:
    order_id: strawberry.ID
    sku: str
    expected_version: int | None = None
    idempotency_key: str | None = None


@flat_input
@strawberry.input
class SubmitOrderInput:
    order_id: strawberry.ID
    expected_version: int | None = None
    idempotency_key: str | None = None


@flat_input
@strawberry.input
class CancelOrderInput:
    order_id: strawberry.ID
    reason: str
    expected_version: int | None = None
    idempotency_key: str | None = None


@strawberry.type
class OrderMutation:
    create_order = command_mutation(CreateOrderInput, CreateOrder, payload)
    add_item = command_mutation(AddItemInput, AddItem, payload)
    remove_item = command_mutation(RemoveItemInput, RemoveItem, payload)
    submit_order = command_mutation(SubmitOrderInput, SubmitOrder, payload)
    cancel_order = command_mutation(CancelOrderInput, CancelOrder, payload)


@strawberry.type
class OrderHistoryQuery:
    @strawberry.field(description="Time travel: the order as of a version or an instant.")
    async def order_at(
        self, info: Info, id: strawberry.ID, version: int | None = None, at: datetime | None = None
    ) -> Order | None:
        c = info.context
        order = await c.services.orders.order_at(c.ctx, id, version=version, at=at)
        return Order.of(order_view(order))


ORDERS = Module(
    name="orders",
    events=ORDER_EVENTS,
    handlers=ORDER_HANDLERS,
    projections=(OrderProjection,),
    reactions=(Ordering,),
    queries=(OrderHistoryQuery, ReadModelQuery),
    mutations=(OrderMutation,),
    node_types=(Order,),
)
