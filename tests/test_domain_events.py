"""The domain's event types: registered explicitly, each once, and every one decodes."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from domain.aggregate import DomainEvent, domain_event
from domain.events import EVENT_TYPES, EventTypes
from domain.order import ItemAdded, Order, order_id_of, order_stream
from domain.product import product_stream, reservation_stream
from domain.wallet import FundsDeposited, wallet_stream


def test_every_event_class_of_the_domain_is_registered() -> None:
    defined = [cls for cls in DomainEvent.__subclasses__() if cls.__module__.startswith("domain.")]
    assert len(defined) >= 17
    assert [cls.TYPE for cls in defined if cls.TYPE not in EVENT_TYPES] == []


def test_a_stored_event_decodes_by_its_type_name() -> None:
    data = {"item_id": "A", "quantity": 2, "price": "19.99", "discount": "0.50"}
    assert EVENT_TYPES.decode(ItemAdded.TYPE, data) == ItemAdded.from_data(data)


def test_defining_an_event_class_registers_nothing_and_a_name_twice_is_refused() -> None:
    @domain_event(ItemAdded.TYPE)
    class Impostor(DomainEvent):
        item_id: str

    assert EVENT_TYPES.decode(ItemAdded.TYPE, {"item_id": "A", "quantity": 1, "price": "1", "discount": "0"}).__class__ is ItemAdded
    with pytest.raises(ValueError, match="registered twice"):
        EventTypes((ItemAdded, Impostor))


def test_a_declared_event_is_a_frozen_dataclass_named_by_its_type() -> None:
    event = ItemAdded(item_id="A", quantity=1, price=Decimal("1.00"), discount=Decimal(0))
    assert ItemAdded.TYPE == "item.added.v2" and dataclasses.is_dataclass(event)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.quantity = 2  # type: ignore[misc]


def test_an_aggregate_refuses_an_event_it_has_no_apply_step_for() -> None:
    with pytest.raises(TypeError, match="Order cannot apply FundsDeposited"):
        Order("ord_1").apply(FundsDeposited(amount=Decimal(1), currency="USD"))


def test_a_stream_kind_names_its_streams_and_reads_the_id_back() -> None:
    assert (order_stream("ord_1"), order_id_of("order-ord_1")) == ("order-ord_1", "ord_1")
    assert (product_stream("SKU-1"), wallet_stream("cus_1")) == ("product-SKU-1", "wallet-cus_1")
    assert reservation_stream("ord_1") == "reservation-ord_1"
