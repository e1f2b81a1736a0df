"""The Order aggregate and its events (contract section 5)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from domain.aggregate import Aggregate, DomainEvent, StreamKind, apply_step, domain_event
from domain.errors import InvalidInput, RuleViolation
from domain.ids import check_id
from domain.money import check_currency, parse_amount

MAX_QUANTITY = 10_000
MAX_LINES = 500

order_stream = StreamKind("order")  # an order's stream id: "order-" and the order id
ORDER_STREAM_PREFIX = order_stream.prefix
order_id_of = order_stream.id_of


def line_total(quantity: int, unit_price: Decimal, discount: Decimal) -> Decimal:
    """What a line costs: the one rule, used by the aggregate, the views and the projection."""
    return quantity * unit_price - discount


@domain_event("order.created.v2")
class OrderCreated(DomainEvent):
    customer_id: str
    currency: str


@domain_event("item.added.v2")
class ItemAdded(DomainEvent):
    item_id: str  # the sku
    quantity: int
    price: Decimal
    discount: Decimal


@domain_event("item.removed.v1")
class ItemRemoved(DomainEvent):
    item_id: str


@domain_event("order.submitted.v1")
class OrderSubmitted(DomainEvent):
    total: Decimal


@domain_event("order.completed.v1")
class OrderCompleted(DomainEvent):
    payment_id: str


@domain_event("order.rejected.v1")
class OrderRejected(DomainEvent):
    reason: str


@domain_event("order.cancelled.v1")
class OrderCancelled(DomainEvent):
    reason: str


# Every event an order's stream holds (registered in domain/events.py; the orders projection reads them).
ORDER_EVENTS: tuple[type[DomainEvent], ...] = (
    OrderCreated, ItemAdded, ItemRemoved, OrderSubmitted, OrderCompleted, OrderRejected, OrderCancelled
)


class OrderStatus(Enum):
    DRAFT = "DRAFT"
    SUBMITTED = "SUBMITTED"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


FINAL_STATUSES = frozenset({OrderStatus.COMPLETED, OrderStatus.REJECTED, OrderStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class OrderLine:
    sku: str
    quantity: int
    unit_price: Decimal
    discount: Decimal

    @property
    def line_total(self) -> Decimal:
        return line_total(self.quantity, self.unit_price, self.discount)


class Order(Aggregate):
    """A customer's order. Adding a sku already on the order adds to its quantity and
    discount when the unit price is the same; a different price is refused."""

    def __init__(self, order_id: str) -> None:
        super().__init__(order_id)
        self.customer_id = ""
        self.currency = "USD"
        self.status = OrderStatus.DRAFT
        self.lines: dict[str, OrderLine] = {}
        self.cancellation_reason: str | None = None
        self.rejection_reason: str | None = None
        self.payment_id: str | None = None
        self.submitted = False  # it went to the saga (a cancelled order may have been charged)

    @property
    def owner(self) -> str | None:
        return self.customer_id or None

    @property
    def exists(self) -> bool:
        return self.version > 0

    @property
    def total(self) -> Decimal:
        return sum((line.line_total for line in self.lines.values()), Decimal(0))

    # Commands: check the rules, then emit.

    def create(self, customer_id: str, currency: str) -> None:
        check_id(self.id, "order id")
        check_id(customer_id, "customer id")
        check_currency(currency)
        if self.exists:
            raise RuleViolation(f"order {self.id} already exists")
        self._emit(OrderCreated(customer_id=customer_id, currency=currency))

    def add_item(self, sku: str, quantity: int, unit_price: str | Decimal, discount: str | Decimal = "0") -> None:
        check_id(sku, "sku")
        if not 1 <= quantity <= MAX_QUANTITY:
            raise InvalidInput(f"quantity must be between 1 and {MAX_QUANTITY}, got {quantity}")
        price = parse_amount(unit_price, self.currency, field="unitPrice")
        if price <= 0:
            raise InvalidInput("unitPrice must be greater than 0")
        off = parse_amount(discount, self.currency, field="discount")
        if not 0 <= off <= quantity * price:
            raise InvalidInput("discount must be between 0 and the line amount (quantity x unitPrice)")
        self._require_draft("add items to")
        existing = self.lines.get(sku)
        if existing is not None:
            if existing.unit_price != price:
                raise RuleViolation(
                    f"{sku} is already on the order at {existing.unit_price}; remove it to change the price"
                )
            if existing.quantity + quantity > MAX_QUANTITY:
                raise RuleViolation(f"{sku} would exceed {MAX_QUANTITY} units")
        elif len(self.lines) >= MAX_LINES:
            raise RuleViolation(f"an order has at most {MAX_LINES} lines")
        self._emit(ItemAdded(item_id=sku, quantity=quantity, price=price, discount=off))

    def remove_item(self, sku: str) -> None:
        self._require_draft("remove items from")
        if sku not in self.lines:
            raise RuleViolation(f"{sku} is not on the order")
        self._emit(ItemRemoved(item_id=sku))

    def submit(self) -> None:
        self._require_draft("submit")
        if not self.lines:
            raise RuleViolation("an empty order cannot be submitted")
        self._emit(OrderSubmitted(total=self.total))

    def cancel(self, reason: str) -> None:
        reason = reason.strip()
        if not reason or len(reason) > 500:
            raise InvalidInput("a cancellation reason of 1-500 characters is required")
        if self.status in FINAL_STATUSES:
            raise RuleViolation(f"a {self.status.value.lower()} order cannot be cancelled")
        self._emit(OrderCancelled(reason=reason))

    def complete(self, payment_id: str) -> None:
        self._require_submitted("complete")
        self._emit(OrderCompleted(payment_id=payment_id))

    def reject(self, reason: str) -> None:
        self._require_submitted("reject")
        self._emit(OrderRejected(reason=reason))

    def _require_draft(self, action: str) -> None:
        if self.status is not OrderStatus.DRAFT:
            raise RuleViolation(f"cannot {action} a {self.status.value.lower()} order")

    def _require_submitted(self, action: str) -> None:
        if self.status is not OrderStatus.SUBMITTED:
            raise RuleViolation(f"cannot {action} a {self.status.value.lower()} order")

    # State changes: one apply step per event type, shared by commands and replay.

    apply = apply_step()

    @apply.register
    def _(self, event: OrderCreated) -> None:
        self.customer_id = event.customer_id
        self.currency = event.currency

    @apply.register
    def _(self, event: ItemAdded) -> None:
        line = self.lines.get(event.item_id)
        if line is None:
            self.lines[event.item_id] = OrderLine(
                event.item_id, event.quantity, event.price, event.discount
            )
        else:
            self.lines[event.item_id] = OrderLine(
                line.sku, line.quantity + event.quantity, line.unit_price, line.discount + event.discount
            )

    @apply.register
    def _(self, event: ItemRemoved) -> None:
        self.lines.pop(event.item_id, None)

    @apply.register
    def _(self, event: OrderSubmitted) -> None:
        self.status = OrderStatus.SUBMITTED
        self.submitted = True

    @apply.register
    def _(self, event: OrderCompleted) -> None:
        self.status = OrderStatus.COMPLETED
        self.payment_id = event.payment_id

    @apply.register
    def _(self, event: OrderRejected) -> None:
        self.status = OrderStatus.REJECTED
        self.rejection_reason = event.reason

    @apply.register
    def _(self, event: OrderCancelled) -> None:
        self.status = OrderStatus.CANCELLED
        self.cancellation_reason = event.reason
