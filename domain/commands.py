"""Commands: what a caller asks of an aggregate, as named, frozen data.

Imperative names (`AddItem`), past-tense events (`ItemAdded`). A command's fields
are its mutation's input fields by name (api/commands.py maps one to the other);
`expected_version` and `idempotency_key`, where a command has them, are the
optimistic check and the key a retry repeats with. Handlers (service/) decide
which aggregate a command goes to and what it may see first.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class CreateOrder:
    customer_id: str
    currency: str = "USD"
    order_id: str | None = None  # the client's own id; None: one is drawn
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class AddItem:
    order_id: str
    sku: str
    quantity: int
    unit_price: Decimal | str
    discount: Decimal | str = "0"
    expected_version: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class RemoveItem:
    order_id: str
    sku: str
    expected_version: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class SubmitOrder:
    order_id: str
    expected_version: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class CancelOrder:
    order_id: str
    reason: str
    expected_version: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class RegisterProduct:
    sku: str
    name: str
    price: Decimal | str
    currency: str = "USD"
    initial_stock: int = 0


@dataclass(frozen=True, slots=True)
class RestockProduct:
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class DepositFunds:
    customer_id: str
    amount: Decimal | str
    currency: str = "USD"
