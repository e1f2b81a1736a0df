"""Order command handlers: authorize, build the decision, run it on the order's stream."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from ulid import ULID

from domain.aggregate import aggregate_id_of
from domain.errors import InvalidInput
from domain.ids import check_id
from domain.order import Order, order_stream
from service.aggregates import Aggregates
from service.context import Principal, RequestContext
from service.errors import Forbidden, NotFound
from service.stream_commands import Command, CommandResult, StreamCommands, input_fingerprint

OrderResult = CommandResult[Order]


def require_visible(order: Order, principal: Principal) -> None:
    """A missing order and another customer's read the same: nothing tells them apart."""
    if not (order.exists and principal.can_see_customer(order.customer_id)):
        raise NotFound(f"order {order.id} not found")


def new_order_id() -> str:
    return f"ord_{ULID()}"


class OrderCommands:
    def __init__(self, commands: StreamCommands, history: Aggregates | None = None) -> None:
        self._commands = commands
        self._history = history or commands.aggregates  # orderAt's reads (replicas, where configured)

    async def create_order(
        self,
        ctx: RequestContext,
        *,
        customer_id: str,
        currency: str = "USD",
        order_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> OrderResult:
        if not ctx.principal.can_see_customer(customer_id):
            raise Forbidden("a customer can only create its own orders")
        inputs = {"orderId": order_id, "customerId": customer_id, "currency": currency}
        order_id = check_id(order_id, "orderId") if order_id is not None else new_order_id()

        def decide(order: Order) -> None:
            order.create(customer_id, currency)

        return await self._run(
            ctx, "createOrder", inputs, order_id, decide, None, idempotency_key, must_exist=False
        )

    async def add_item(
        self,
        ctx: RequestContext,
        *,
        order_id: str,
        sku: str,
        quantity: int,
        unit_price: Decimal | str,
        discount: Decimal | str = "0",
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> OrderResult:
        return await self._run(
            ctx,
            "addItem",
            {"sku": sku, "quantity": quantity, "unitPrice": unit_price, "discount": discount},
            order_id,
            lambda order: order.add_item(sku, quantity, unit_price, discount),
            expected_version,
            idempotency_key,
        )

    async def remove_item(
        self,
        ctx: RequestContext,
        *,
        order_id: str,
        sku: str,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> OrderResult:
        return await self._run(
            ctx, "removeItem", {"sku": sku}, order_id, lambda order: order.remove_item(sku),
            expected_version, idempotency_key,
        )

    async def submit_order(
        self,
        ctx: RequestContext,
        *,
        order_id: str,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> OrderResult:
        return await self._run(ctx, "submitOrder", {}, order_id, Order.submit, expected_version, idempotency_key)

    async def cancel_order(
        self,
        ctx: RequestContext,
        *,
        order_id: str,
        reason: str,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> OrderResult:
        return await self._run(
            ctx, "cancelOrder", {"reason": reason}, order_id, lambda order: order.cancel(reason),
            expected_version, idempotency_key,
        )

    async def order_at(
        self, ctx: RequestContext, order_id: str, *, version: int | None = None, at: datetime | None = None
    ) -> Order:
        """Time travel: the order as of a version or an instant (the latest when neither)."""
        if version is not None and version < 1:
            raise InvalidInput("version must be at least 1")
        check_id(order_id, "order id")
        order = await self._history.load(
            order_stream(order_id), lambda: Order(order_id), to_version=version, until=at
        )
        require_visible(order, ctx.principal)
        return order

    async def _run(
        self,
        ctx: RequestContext,
        name: str,  # the mutation, and its `inputs` besides the order id and expected version:
        inputs: dict[str, Any],  # what a reused idempotency key is compared on
        order_id: str,
        decide: Callable[[Order], None],
        expected_version: int | None,
        idempotency_key: str | None,
        *,
        must_exist: bool = True,
    ) -> OrderResult:
        check_id(order_id, "orderId")
        if expected_version is not None and expected_version < 0:
            raise InvalidInput("expectedVersion must be 0 or more")
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
            raise InvalidInput("idempotencyKey must be 1-200 characters")
        principal = ctx.principal

        def authorize(order: Order) -> None:
            if must_exist:
                require_visible(order, principal)

        return await self._commands.execute(
            Command(
                stream_id=order_stream(order_id),
                new_aggregate=lambda stream_id: Order(aggregate_id_of(stream_id)),
                decide=decide,
                authorize=authorize,
                metadata=ctx.event_metadata(),
                expected_version=expected_version,
                idempotency=(ctx.idempotency_scope, idempotency_key) if idempotency_key else None,
                # inputs first-hand: createOrder's is the client's orderId, not the one drawn
                fingerprint=input_fingerprint(
                    name, **{"orderId": order_id, "expectedVersion": expected_version, **inputs}
                ) if idempotency_key else None,
            )
        )
