"""The Wallet aggregate: a customer's funds, and one payment decision per order.

The wallet remembers every order it has settled (charged or refused), so an
order is charged at most once however often its reservation is delivered. An
order cancelled after its charge gets the charge back, once; one cancelled
before it is refused, so a charge decided on a stale view of the order cannot
land afterwards (both decisions go through this aggregate's version).
"""

from __future__ import annotations

from decimal import Decimal

from domain.aggregate import Aggregate, DomainEvent, StreamKind, apply_step, domain_event
from domain.errors import InvalidInput, RuleViolation
from domain.ids import check_id
from domain.money import parse_amount

INSUFFICIENT_FUNDS = "insufficient_funds"
CURRENCY_MISMATCH = "currency_mismatch"
ORDER_NOT_PAYABLE = "order_not_payable"  # cancelled (or otherwise settled) before payment


wallet_stream = StreamKind("wallet")


@domain_event("funds.deposited.v1")
class FundsDeposited(DomainEvent):
    amount: Decimal
    currency: str


@domain_event("payment.charged.v1")
class PaymentCharged(DomainEvent):
    order_id: str
    amount: Decimal


@domain_event("payment.failed.v1")
class PaymentFailed(DomainEvent):
    order_id: str
    reason: str  # INSUFFICIENT_FUNDS, CURRENCY_MISMATCH or ORDER_NOT_PAYABLE


@domain_event("payment.refunded.v1")
class PaymentRefunded(DomainEvent):
    order_id: str
    amount: Decimal


WALLET_EVENTS: tuple[type[DomainEvent], ...] = (FundsDeposited, PaymentCharged, PaymentFailed, PaymentRefunded)


class Wallet(Aggregate):
    """One currency per wallet, set by its first deposit."""

    def __init__(self, customer_id: str) -> None:
        super().__init__(customer_id)
        self.customer_id = customer_id
        self.currency: str | None = None
        self.balance = Decimal(0)
        self.settled: dict[str, bool] = {}  # order id -> charged (True) or refused (False)
        self.charged: dict[str, Decimal] = {}  # order id -> amount charged and not refunded

    @property
    def owner(self) -> str | None:
        return self.customer_id

    @property
    def exists(self) -> bool:
        return self.version > 0

    # Commands: check the rules, then emit.

    def deposit(self, amount: str | Decimal, currency: str) -> None:
        check_id(self.customer_id, "customerId")
        value = parse_amount(amount, currency)
        if value <= 0:
            raise InvalidInput("amount must be greater than 0")
        if self.currency is not None and currency != self.currency:
            raise RuleViolation(f"this wallet holds {self.currency}, not {currency}")
        if abs(self.balance + value) >= Decimal(10) ** 15:
            raise RuleViolation("the balance would be too large")
        self._emit(FundsDeposited(amount=value, currency=currency))

    def pay_for_order(self, order_id: str, amount: Decimal, currency: str, *, payable: bool = True) -> None:
        """Charge the order's amount, or record why not; nothing if the order was settled."""
        if order_id in self.settled:
            return
        if not payable:
            self._emit(PaymentFailed(order_id=order_id, reason=ORDER_NOT_PAYABLE))
        elif self.currency not in (None, currency):
            self._emit(PaymentFailed(order_id=order_id, reason=CURRENCY_MISMATCH))
        elif amount > self.balance:
            self._emit(PaymentFailed(order_id=order_id, reason=INSUFFICIENT_FUNDS))
        else:
            self._emit(PaymentCharged(order_id=order_id, amount=amount))

    def close_order(self, order_id: str) -> None:
        """The order was cancelled: refund what it was charged, or refuse a later charge."""
        if order_id in self.charged:
            self._emit(PaymentRefunded(order_id=order_id, amount=self.charged[order_id]))
        elif order_id not in self.settled:
            self._emit(PaymentFailed(order_id=order_id, reason=ORDER_NOT_PAYABLE))

    # State changes: one apply step per event type, shared by commands and replay.

    apply = apply_step()

    @apply.register
    def _(self, event: FundsDeposited) -> None:
        self.currency = event.currency
        self.balance += event.amount

    @apply.register
    def _(self, event: PaymentCharged) -> None:
        self.balance -= event.amount
        self.settled[event.order_id] = True
        self.charged[event.order_id] = event.amount

    @apply.register
    def _(self, event: PaymentRefunded) -> None:
        self.balance += event.amount
        del self.charged[event.order_id]

    @apply.register
    def _(self, event: PaymentFailed) -> None:
        self.settled[event.order_id] = False
