"""Product aggregate and the all-or-none reservation: given events, when a command, then events."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.errors import InvalidInput, RuleViolation
from domain.product import (
    OUT_OF_STOCK,
    UNKNOWN_PRODUCT,
    InventoryConsumed,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    Product,
    ProductRegistered,
    ProductRestocked,
    consume_order,
    release_order,
    reserve_order,
)


def given(sku: str, *events: object) -> Product:
    product = Product(sku)
    for version, event in enumerate(events, start=1):
        product.replay(event, version)  # type: ignore[arg-type]
    return product


def registered(sku: str, stock: int) -> ProductRegistered:
    return ProductRegistered(sku=sku, name=sku.title(), price=Decimal("2.50"), currency="USD", initial_stock=stock)


def test_register_then_restock() -> None:
    product = Product("SKU-1")
    product.register("Widget", "2.50", "USD", 3)
    product.restock(4)
    assert product.take_changes() == [
        ProductRegistered(sku="SKU-1", name="Widget", price=Decimal("2.50"), currency="USD", initial_stock=3),
        ProductRestocked(quantity=4),
    ]
    assert product.available == 7 and product.version == 2


@pytest.mark.parametrize(
    ("name", "price", "currency", "stock"),
    [("", "1", "USD", 0), ("x", "-1", "USD", 0), ("x", "1.001", "USD", 0), ("x", "1", "XXX", 0), ("x", "1", "USD", -1)],
)
def test_register_refuses_bad_input(name: str, price: str, currency: str, stock: int) -> None:
    with pytest.raises(InvalidInput):
        Product("SKU-1").register(name, price, currency, stock)


def test_register_twice_and_restock_zero_are_refused() -> None:
    product = given("A", registered("A", 1))
    with pytest.raises(RuleViolation):
        product.register("Again", "1", "USD", 0)
    with pytest.raises(InvalidInput):
        product.restock(0)


def test_reservation_takes_every_line_or_none() -> None:
    products = {"A": given("A", registered("A", 5)), "B": given("B", registered("B", 1))}
    failure = reserve_order(products, "ord_1", {"A": 2, "B": 2})
    assert failure == InventoryReservationFailed("ord_1", OUT_OF_STOCK, "B")
    assert all(not p.take_changes() for p in products.values())

    assert reserve_order(products, "ord_2", {"B": 1, "A": 2}) is None
    items = [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}]
    assert products["A"].take_changes() == [InventoryReserved("ord_2", items)]
    assert products["B"].take_changes() == [InventoryReserved("ord_2", items)]
    assert (products["A"].available, products["B"].available) == (3, 0)
    assert products["A"].held == {"ord_2": 2}


def test_unknown_product_fails_the_reservation() -> None:
    products = {"A": given("A", registered("A", 5)), "Z": Product("Z")}
    assert reserve_order(products, "ord_1", {"A": 1, "Z": 1}) == InventoryReservationFailed(
        "ord_1", UNKNOWN_PRODUCT, "Z"
    )


def test_reserving_again_for_the_same_order_changes_nothing() -> None:
    items = [{"sku": "A", "quantity": 2}]
    products = {"A": given("A", registered("A", 5), InventoryReserved("ord_1", items))}
    assert reserve_order(products, "ord_1", {"A": 2}) is None
    assert products["A"].take_changes() == [] and products["A"].available == 3


def test_release_returns_the_held_units_once() -> None:
    items = [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}]
    products = {
        "A": given("A", registered("A", 5), InventoryReserved("ord_1", items)),
        "B": given("B", registered("B", 1), InventoryReserved("ord_1", items)),
    }
    release_order(products, "ord_1")
    assert products["A"].take_changes() == [InventoryReleased("ord_1")]
    assert products["B"].take_changes() == [InventoryReleased("ord_1")]
    assert (products["A"].available, products["B"].available) == (5, 1)
    assert (products["A"].reserved, products["B"].reserved) == (0, 0)
    release_order(products, "ord_1")
    assert products["A"].take_changes() == [] and products["B"].take_changes() == []


def test_a_completed_order_consumes_what_it_held() -> None:
    items = [{"sku": "A", "quantity": 2}]
    products = {"A": given("A", registered("A", 5), InventoryReserved("ord_1", items))}
    assert (products["A"].available, products["A"].reserved) == (3, 2)
    consume_order(products, "ord_1")
    consume_order(products, "ord_1")
    assert products["A"].take_changes() == [InventoryConsumed("ord_1")]
    assert (products["A"].available, products["A"].reserved, products["A"].held) == (3, 0, {})
    with pytest.raises(RuleViolation):
        products["A"].release("ord_1")


def test_only_the_first_items_stream_leads() -> None:
    event = InventoryReserved("ord_1", [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 1}])
    assert event.is_lead("product-A") and not event.is_lead("product-B")
    assert InventoryReserved.from_data(event.to_data()) == event
