"""The domain's event types: registered explicitly, each once, and every one decodes."""

from __future__ import annotations

import pytest

from domain.aggregate import DomainEvent, domain_event
from domain.events import EVENT_TYPES, EventTypes
from domain.order import ItemAdded


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
