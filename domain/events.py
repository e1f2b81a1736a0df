"""Event types by name: stored events decode by their type name.

Registration is explicit (not a side effect of importing a module), and a name
registered twice is an error. The app decodes with the registry its modules build
(service/module.py: each Module lists its event classes); `EVENT_TYPES`, the
built-in aggregates' own, is the default for code that runs without modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from domain.aggregate import DomainEvent
from domain.order import ORDER_EVENTS
from domain.product import PRODUCT_EVENTS
from domain.wallet import WALLET_EVENTS


class EventTypes:
    def __init__(self, *groups: Iterable[type[DomainEvent]]) -> None:
        self._by_name: dict[str, type[DomainEvent]] = {}
        for group in groups:
            self.register(*group)

    def register(self, *classes: type[DomainEvent]) -> None:
        for cls in classes:
            known = self._by_name.setdefault(cls.TYPE, cls)
            if known is not cls:
                raise ValueError(f"event type {cls.TYPE} registered twice: {known.__name__}, {cls.__name__}")

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def decode(self, name: str, data: Mapping[str, Any]) -> DomainEvent:
        return self._by_name[name].from_data(data)


EVENT_TYPES = EventTypes(ORDER_EVENTS, PRODUCT_EVENTS, WALLET_EVENTS)
decode_event = EVENT_TYPES.decode
