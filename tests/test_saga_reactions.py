"""Saga reactions are declared by the event classes they handle; `handles` follows."""

from __future__ import annotations

from typing import Any

import pytest

from domain.order import OrderCancelled, OrderCompleted, OrderSubmitted
from domain.product import InventoryReservationFailed, InventoryReserved
from domain.wallet import PaymentCharged, PaymentFailed
from eventstore import RecordedEvent, Tracking
from service.saga.reactions import Inventory, Ordering, Payments, Reactions, reacts_to


def test_each_context_handles_exactly_the_event_types_its_methods_react_to() -> None:
    assert Inventory.handles == {t.TYPE for t in (OrderSubmitted, PaymentFailed, OrderCancelled, OrderCompleted)}
    assert Payments.handles == {InventoryReserved.TYPE, OrderCancelled.TYPE}
    assert Ordering.handles == {PaymentCharged.TYPE, PaymentFailed.TYPE, InventoryReservationFailed.TYPE}


def test_two_reactions_to_one_event_type_are_refused() -> None:
    with pytest.raises(TypeError, match="Twice reacts to OrderSubmitted twice"):

        class Twice(Reactions):
            group = "twice"

            @reacts_to(OrderSubmitted)
            async def first(self, event: RecordedEvent, tracking: Tracking, metadata: dict[str, Any]) -> None: ...

            @reacts_to(OrderSubmitted, OrderCancelled)
            async def second(self, event: RecordedEvent, tracking: Tracking, metadata: dict[str, Any]) -> None: ...
