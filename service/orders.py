"""Order command handlers (authorize, say how to decide) and the order's history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ulid import ULID

from domain.commands import AddItem, CancelOrder, CreateOrder, RemoveItem, SubmitOrder
from domain.errors import InvalidInput
from domain.ids import check_id
from domain.order import Order, order_stream
from service.aggregates import Aggregates
from service.context import Principal, RequestContext
from service.errors import Forbidden, NotFound
from service.handlers import Handler, Plan
from service.stream_commands import CommandResult

OrderResult = CommandResult[Order]


def require_visible(order: Order, principal: Principal) -> None:
    """A missing order and another customer's read the same: nothing tells them apart."""
    if not (order.exists and principal.can_see_customer(order.customer_id)):
        raise NotFound(f"order {order.id} not found")


def new_order_id() -> str:
    return f"ord_{ULID()}"


def create_order(ctx: RequestContext, command: CreateOrder) -> Plan[Order]:
    if not ctx.principal.can_see_customer(command.customer_id):
        raise Forbidden("a customer can only create its own orders")
    order_id = check_id(command.order_id, "orderId") if command.order_id is not None else new_order_id()

    def decide(order: Order) -> None:
        order.create(command.customer_id, command.currency)

    return Plan(order_stream(order_id), Order, decide)


def _on_visible_order(ctx: RequestContext, order_id: str, decide: Callable[[Order], None]) -> Plan[Order]:
    """A command on an existing order the caller may see (others' read as missing)."""
    check_id(order_id, "orderId")
    principal = ctx.principal
    return Plan(order_stream(order_id), Order, decide, authorize=lambda order: require_visible(order, principal))


def add_item(ctx: RequestContext, command: AddItem) -> Plan[Order]:
    return _on_visible_order(
        ctx,
        command.order_id,
        lambda order: order.add_item(command.sku, command.quantity, command.unit_price, command.discount),
    )


def remove_item(ctx: RequestContext, command: RemoveItem) -> Plan[Order]:
    return _on_visible_order(ctx, command.order_id, lambda order: order.remove_item(command.sku))


def submit_order(ctx: RequestContext, command: SubmitOrder) -> Plan[Order]:
    return _on_visible_order(ctx, command.order_id, Order.submit)


def cancel_order(ctx: RequestContext, command: CancelOrder) -> Plan[Order]:
    return _on_visible_order(ctx, command.order_id, lambda order: order.cancel(command.reason))


ORDER_HANDLERS: tuple[Handler, ...] = (create_order, add_item, remove_item, submit_order, cancel_order)


class OrderHistory:
    def __init__(self, aggregates: Aggregates) -> None:
        self._aggregates = aggregates  # orderAt's reads (replicas, where configured)

    async def order_at(
        self, ctx: RequestContext, order_id: str, *, version: int | None = None, at: datetime | None = None
    ) -> Order:
        """Time travel: the order as of a version or an instant (the latest when neither)."""
        if version is not None and version < 1:
            raise InvalidInput("version must be at least 1")
        check_id(order_id, "order id")
        order = await self._aggregates.load(
            order_stream(order_id), lambda: Order(order_id), to_version=version, until=at
        )
        require_visible(order, ctx.principal)
        return order
