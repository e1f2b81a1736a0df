"""The Order aggregate: given events, when a command, then events or a refusal. No I/O."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.aggregate import DomainEvent
from domain.errors import InvalidInput, RuleViolation
from domain.money import format_amount, parse_amount
from domain.order import (
    ItemAdded,
    ItemRemoved,
    Order,
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderStatus,
    OrderSubmitted,
)


def given(*events: DomainEvent, currency: str = "USD") -> Order:
    order = Order("ord_1")
    for version, event in enumerate((OrderCreated("cus_1", currency), *events), start=1):
        order.replay(event, version)
    return order


def item(sku: str = "SKU1", quantity: int = 1, price: str = "1.00", discount: str = "0") -> ItemAdded:
    return ItemAdded(sku, quantity, Decimal(price), Decimal(discount))


def test_create_emits_order_created() -> None:
    order = Order("ord_1")
    order.create("cus_1", "EUR")
    assert order.take_changes() == [OrderCreated("cus_1", "EUR")]
    assert order.version == 1 and order.currency == "EUR"


def test_create_twice_is_refused() -> None:
    with pytest.raises(RuleViolation):
        given().create("cus_1", "USD")


def test_exact_totals() -> None:
    order = given()
    order.add_item("A", 1, "0.10")
    order.add_item("B", 1, "0.20")
    assert order.total == Decimal("0.30")
    assert format_amount(order.total, "USD") == "0.30"
    order.submit()
    assert order.take_changes()[-1] == OrderSubmitted(total=Decimal("0.30"))


def test_line_total_subtracts_discount() -> None:
    order = given(item("A", 3, "2.50", "1.00"))
    assert order.lines["A"].line_total == Decimal("6.50")


def test_adding_a_sku_again_adds_quantity_at_the_same_price() -> None:
    order = given(item("A", 2, "5.00"))
    order.add_item("A", 3, "5.00", "1.00")
    assert order.lines["A"].quantity == 5
    assert order.lines["A"].discount == Decimal("1.00")


def test_adding_a_sku_again_at_another_price_is_refused() -> None:
    with pytest.raises(RuleViolation):
        given(item("A", 2, "5.00")).add_item("A", 1, "6.00")


@pytest.mark.parametrize(
    ("quantity", "price", "discount"),
    [
        (0, "1.00", "0"),
        (10_001, "1.00", "0"),
        (1, "-1.00", "0"),
        (1, "0", "0"),
        (1, "abc", "0"),
        (1, "NaN", "0"),
        (1, "Infinity", "0"),
        (1, "1.001", "0"),
        (1, "1.00", "-0.01"),
        (1, "1.00", "1.01"),
    ],
)
def test_bad_item_input_is_refused_without_events(quantity: int, price: str, discount: str) -> None:
    order = given()
    with pytest.raises(InvalidInput):
        order.add_item("A", quantity, price, discount)
    assert order.take_changes() == [] and order.version == 1


def test_jpy_has_no_minor_digits() -> None:
    order = given(currency="JPY")
    order.add_item("A", 1, "5")
    assert format_amount(order.total, "JPY") == "5"
    with pytest.raises(InvalidInput):
        order.add_item("B", 1, "5.5")


def test_unknown_currency_is_invalid() -> None:
    with pytest.raises(InvalidInput):
        Order("ord_2").create("cus_1", "ABC")
    with pytest.raises(InvalidInput):
        parse_amount("1", "usd")


def test_remove_item() -> None:
    order = given(item("A"), item("B"))
    order.remove_item("A")
    assert order.take_changes() == [ItemRemoved("A")]
    assert list(order.lines) == ["B"]
    with pytest.raises(RuleViolation):
        order.remove_item("A")


def test_submit_empty_order_is_refused() -> None:
    with pytest.raises(RuleViolation):
        given().submit()


def test_submitted_order_refuses_changes() -> None:
    order = given(item(), OrderSubmitted(Decimal("1.00")))
    assert order.status is OrderStatus.SUBMITTED
    for command in (lambda: order.add_item("B", 1, "1.00"), lambda: order.remove_item("SKU1"), order.submit):
        with pytest.raises(RuleViolation):
            command()


def test_cancel_needs_a_reason_and_a_live_order() -> None:
    order = given(item())
    with pytest.raises(InvalidInput):
        order.cancel("  ")
    order.cancel("changed my mind")
    assert order.take_changes() == [OrderCancelled("changed my mind")]
    assert order.status is OrderStatus.CANCELLED
    with pytest.raises(RuleViolation):
        order.cancel("again")


def test_completed_order_cannot_be_cancelled() -> None:
    order = given(item(), OrderSubmitted(Decimal("1.00")), OrderCompleted("pay_1"))
    with pytest.raises(RuleViolation):
        order.cancel("too late")


def test_saga_outcomes_need_a_submitted_order() -> None:
    with pytest.raises(RuleViolation):
        given(item()).complete("pay_1")
    order = given(item(), OrderSubmitted(Decimal("1.00")))
    order.reject("out_of_stock")
    assert order.status is OrderStatus.REJECTED


def test_event_data_round_trips_with_exact_decimals() -> None:
    event = item("A", 2, "19.99", "0.50")
    data = event.to_data()
    assert data == {"item_id": "A", "quantity": 2, "price": "19.99", "discount": "0.50"}
    assert ItemAdded.from_data(data) == event


def test_snapshot_is_independent() -> None:
    order = given(item("A", 1))
    copy = order.snapshot()
    order.add_item("A", 1, "1.00")
    assert copy.lines["A"].quantity == 1 and order.lines["A"].quantity == 2
