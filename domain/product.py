"""The Product aggregate (stock of one sku) and the all-or-none reservation of an order.

A reservation of an order is recorded on *every* product stream it touches:
one `inventory.reserved.v1` per product, each carrying the whole reservation
(`items`: every sku and quantity), all appended in one transaction with the
expected version of each product stream. Each product applies only its own
line. The first item's product is the reservation's lead: the one event that
other contexts react to (see `is_lead`). Afterwards each product records, on
its own stream, what became of the units it held for the order: released
(payment failed, order cancelled) or consumed (order completed). A failed
reservation changes no product: it is recorded on `reservation-<order id>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from domain.aggregate import Aggregate, DomainEvent, StreamKind, apply_step, domain_event
from domain.errors import InvalidInput, RuleViolation
from domain.ids import check_id
from domain.money import parse_amount

MAX_STOCK = 1_000_000_000
MAX_NAME = 200

OUT_OF_STOCK = "out_of_stock"
UNKNOWN_PRODUCT = "unknown_product"


product_stream = StreamKind("product")
reservation_stream = StreamKind("reservation")  # an order's failed reservation: it changes no product


@domain_event("product.registered.v1")
class ProductRegistered(DomainEvent):
    sku: str
    name: str
    price: Decimal
    currency: str
    initial_stock: int


@domain_event("product.restocked.v1")
class ProductRestocked(DomainEvent):
    quantity: int


@domain_event("inventory.reserved.v1")
class InventoryReserved(DomainEvent):
    order_id: str
    items: list[dict[str, Any]]  # the whole reservation: [{"sku", "quantity"}], sorted by sku

    def quantity_of(self, sku: str) -> int:
        return sum(int(item["quantity"]) for item in self.items if item["sku"] == sku)

    def is_lead(self, stream_id: str) -> bool:
        """True for the one event of the reservation (on the first item's stream) that
        stands for the whole of it, so that a reaction happens once per order."""
        return bool(self.items) and stream_id == product_stream(self.items[0]["sku"])


@domain_event("inventory.reservation.failed.v1")
class InventoryReservationFailed(DomainEvent):
    order_id: str
    reason: str  # OUT_OF_STOCK or UNKNOWN_PRODUCT
    sku: str = ""  # the first line that could not be reserved


@domain_event("inventory.released.v1")
class InventoryReleased(DomainEvent):
    order_id: str


@domain_event("inventory.consumed.v1")
class InventoryConsumed(DomainEvent):
    """The completed order took the units it held: reserved goes down, available stays."""

    order_id: str


PRODUCT_EVENTS: tuple[type[DomainEvent], ...] = (
    ProductRegistered, ProductRestocked, InventoryReserved, InventoryReservationFailed, InventoryReleased,
    InventoryConsumed,
)


class Product(Aggregate):
    """Stock of one sku: `available` to reserve, and what each order in flight holds."""

    def __init__(self, sku: str) -> None:
        super().__init__(sku)
        self.sku = sku
        self.name = ""
        self.price = Decimal(0)
        self.currency = "USD"
        self.available = 0
        self.reserved = 0
        self.held: dict[str, int] = {}  # order id -> units reserved for it, until released or consumed

    @property
    def exists(self) -> bool:
        return self.version > 0

    # Commands: check the rules, then emit.

    def register(self, name: str, price: str | Decimal, currency: str, initial_stock: int) -> None:
        check_id(self.sku, "sku")
        name = name.strip()
        if not 1 <= len(name) <= MAX_NAME:
            raise InvalidInput(f"name must be 1-{MAX_NAME} characters")
        amount = parse_amount(price, currency, field="price")
        if amount < 0:
            raise InvalidInput("price must not be negative")
        _check_quantity(initial_stock, "initialStock", minimum=0)
        if self.exists:
            raise RuleViolation(f"product {self.sku} is already registered")
        self._emit(
            ProductRegistered(
                sku=self.sku, name=name, price=amount, currency=currency, initial_stock=initial_stock
            )
        )

    def restock(self, quantity: int) -> None:
        _check_quantity(quantity, "quantity", minimum=1)
        if self.available + quantity > MAX_STOCK:
            raise RuleViolation(f"{self.sku} would hold more than {MAX_STOCK} units")
        self._emit(ProductRestocked(quantity=quantity))

    def reserve(self, order_id: str, items: Sequence[Mapping[str, Any]]) -> None:
        quantity = sum(int(i["quantity"]) for i in items if i["sku"] == self.sku)
        if order_id in self.held:
            raise RuleViolation(f"{self.sku} already holds stock for {order_id}")
        if quantity < 1 or quantity > self.available:
            raise RuleViolation(f"{self.sku} has {self.available} units, {quantity} asked")
        self._emit(InventoryReserved(order_id=order_id, items=[dict(i) for i in items]))

    def release(self, order_id: str) -> None:
        if order_id not in self.held:
            raise RuleViolation(f"{self.sku} holds nothing for {order_id}")
        self._emit(InventoryReleased(order_id=order_id))

    def consume(self, order_id: str) -> None:
        if order_id not in self.held:
            raise RuleViolation(f"{self.sku} holds nothing for {order_id}")
        self._emit(InventoryConsumed(order_id=order_id))

    # State changes: one apply step per event type, shared by commands and replay.

    apply = apply_step()

    @apply.register
    def _(self, event: ProductRegistered) -> None:
        self.name = event.name
        self.price = event.price
        self.currency = event.currency
        self.available = event.initial_stock

    @apply.register
    def _(self, event: ProductRestocked) -> None:
        self.available += event.quantity

    @apply.register
    def _(self, event: InventoryReserved) -> None:
        quantity = event.quantity_of(self.sku)
        self.available -= quantity
        self.reserved += quantity
        self.held[event.order_id] = quantity

    @apply.register
    def _(self, event: InventoryReleased) -> None:
        quantity = self.held.pop(event.order_id, 0)
        self.available += quantity
        self.reserved -= quantity

    @apply.register
    def _(self, event: InventoryConsumed) -> None:
        self.reserved -= self.held.pop(event.order_id, 0)


def _check_quantity(value: int, what: str, *, minimum: int) -> None:
    if not isinstance(value, int) or not minimum <= value <= MAX_STOCK:
        raise InvalidInput(f"{what} must be between {minimum} and {MAX_STOCK}")


def reservation_items(lines: Mapping[str, int]) -> list[dict[str, Any]]:
    """An order's lines (sku -> quantity) as a reservation's items, in a stable order."""
    return [{"sku": sku, "quantity": quantity} for sku, quantity in sorted(lines.items())]


def reserve_order(
    products: Mapping[str, Product], order_id: str, lines: Mapping[str, int]
) -> InventoryReservationFailed | None:
    """All or none: every product reserves its line, or none changes and the failure says
    why (None: reserved, now or before). `products` holds every sku of `lines`."""
    items = reservation_items(lines)
    if any(order_id in products[item["sku"]].held for item in items):
        return None  # reserved before: nothing more to do
    for item in items:
        product = products[item["sku"]]
        if not product.exists:
            return InventoryReservationFailed(order_id, UNKNOWN_PRODUCT, product.sku)
        if product.available < item["quantity"]:
            return InventoryReservationFailed(order_id, OUT_OF_STOCK, product.sku)
    for item in items:
        products[item["sku"]].reserve(order_id, items)
    return None


def release_order(products: Mapping[str, Product], order_id: str) -> None:
    """Compensation: every product holding stock for the order gives it back."""
    for product in products.values():
        if order_id in product.held:
            product.release(order_id)


def consume_order(products: Mapping[str, Product], order_id: str) -> None:
    """The order completed: every product holding stock for it lets the units go."""
    for product in products.values():
        if order_id in product.held:
            product.consume(order_id)
