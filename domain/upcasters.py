"""Old event versions, read as the latest: pure functions from stored data to new data."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

Upcast = Callable[[Mapping[str, Any]], dict[str, Any]]


def order_created_v1_to_v2(data: Mapping[str, Any]) -> dict[str, Any]:
    return {"currency": "USD", **data}


def item_added_v1_to_v2(data: Mapping[str, Any]) -> dict[str, Any]:
    price = data["price"]
    # A JSON number decodes to a float; its shortest repr is the literal that was stored.
    exact = str(Decimal(repr(price))) if isinstance(price, float) else str(Decimal(str(price)))
    return {**data, "price": exact, "discount": str(data.get("discount", "0"))}


# (from type, to type, upcast); chains are followed v1 -> v2 -> ...
UPCASTERS: list[tuple[str, str, Upcast]] = [
    ("order.created.v1", "order.created.v2", order_created_v1_to_v2),
    ("item.added.v1", "item.added.v2", item_added_v1_to_v2),
]
