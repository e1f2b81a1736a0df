"""What queries return: plain frozen views, the same whether from a read table or a fold."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from domain.order import Order, OrderLine

# A line as queries return it is the domain's own frozen line value: one source for its total.
OrderLineView = OrderLine


@dataclass(frozen=True)
class OrderView:
    id: str
    customer_id: str
    status: str  # an OrderStatus name
    currency: str
    lines: tuple[OrderLineView, ...]
    total: Decimal
    version: int
    cancellation_reason: str | None
    created_at: datetime
    updated_at: datetime


def order_view(order: Order) -> OrderView:
    """The view of an aggregate folded from the store (mutation payloads, time travel)."""
    assert order.created_at is not None and order.updated_at is not None
    return OrderView(
        id=order.id,
        customer_id=order.customer_id,
        status=order.status.value,
        currency=order.currency,
        lines=tuple(
            OrderLineView(line.sku, line.quantity, line.unit_price, line.discount)
            for line in order.lines.values()
        ),
        total=order.total,
        version=order.version,
        cancellation_reason=order.cancellation_reason,
        created_at=order.created_at,
        updated_at=order.updated_at,
    )
