"""Order commands (mutations) and time travel from the event store."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry

from api.context import Info
from api.inputs import flat_input
from api.types import Order, OrderPayload
from readmodels.views import order_view
from service.orders import OrderResult


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
    @strawberry.mutation
    async def create_order(self, info: Info, input: CreateOrderInput) -> OrderPayload:
        c = info.context
        return payload(
            await c.services.orders.create_order(
                c.ctx,
                customer_id=input.customer_id,
                currency=input.currency or "USD",
                order_id=input.order_id,
                idempotency_key=input.idempotency_key,
            )
        )

    @strawberry.mutation
    async def add_item(self, info: Info, input: AddItemInput) -> OrderPayload:
        c = info.context
        return payload(
            await c.services.orders.add_item(
                c.ctx,
                order_id=input.order_id,
                sku=input.sku,
                quantity=input.quantity,
                unit_price=input.unit_price,
                discount=input.discount if input.discount is not None else Decimal(0),
                expected_version=input.expected_version,
                idempotency_key=input.idempotency_key,
            )
        )

    @strawberry.mutation
    async def remove_item(self, info: Info, input: RemoveItemInput) -> OrderPayload:
        c = info.context
        return payload(
            await c.services.orders.remove_item(
                c.ctx,
                order_id=input.order_id,
                sku=input.sku,
                expected_version=input.expected_version,
                idempotency_key=input.idempotency_key,
            )
        )

    @strawberry.mutation
    async def submit_order(self, info: Info, input: SubmitOrderInput) -> OrderPayload:
        c = info.context
        return payload(
            await c.services.orders.submit_order(
                c.ctx,
                order_id=input.order_id,
                expected_version=input.expected_version,
                idempotency_key=input.idempotency_key,
            )
        )

    @strawberry.mutation
    async def cancel_order(self, info: Info, input: CancelOrderInput) -> OrderPayload:
        c = info.context
        return payload(
            await c.services.orders.cancel_order(
                c.ctx,
                order_id=input.order_id,
                reason=input.reason,
                expected_version=input.expected_version,
                idempotency_key=input.idempotency_key,
            )
        )


@strawberry.type
class OrderHistoryQuery:
    @strawberry.field(description="Time travel: the order as of a version or an instant.")
    async def order_at(
        self, info: Info, id: strawberry.ID, version: int | None = None, at: datetime | None = None
    ) -> Order | None:
        c = info.context
        order = await c.services.orders.order_at(c.ctx, id, version=version, at=at)
        return Order.of(order_view(order))
