"""The products projection (`product_views`, `product_holds`) and its queries.

A batch costs three statements whatever its size: load the touched products
and their holds, fold the events in memory, write back. An event whose stream
version the row already reflects is skipped, so a replayed batch is a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

import asyncpg

from domain.product import (
    InventoryConsumed,
    InventoryReleased,
    InventoryReserved,
    ProductRegistered,
    ProductRestocked,
)
from eventstore.pool import Pool
from eventstore.replicas import ReadPools, read_pools
from readmodels.projection import LogEvent, Projection

PRODUCT_STREAM_PREFIX = "product-"


@dataclass(frozen=True)
class ProductView:
    sku: str
    name: str
    price: Decimal
    currency: str
    available: int
    reserved: int
    version: int
    updated_at: datetime


@dataclass
class _Product:
    view: ProductView
    holds: dict[str, int] = field(default_factory=dict)  # order id -> units


def _fold(product: _Product | None, event: LogEvent) -> _Product | None:
    """One event's effect; mirrors domain.product.Product.apply."""
    data, kind = event.data, event.type
    if kind == ProductRegistered.TYPE:
        view = ProductView(
            sku=data["sku"], name=data["name"], price=Decimal(data["price"]), currency=data["currency"],
            available=int(data["initial_stock"]), reserved=0, version=0, updated_at=event.recorded_at,
        )
        product = _Product(view)
    if product is None:
        return None  # a stream whose registration this projection never saw: nothing to show
    view = product.view
    if kind == ProductRestocked.TYPE:
        view = replace(view, available=view.available + int(data["quantity"]))
    elif kind == InventoryReserved.TYPE:
        quantity = sum(int(i["quantity"]) for i in data["items"] if i["sku"] == view.sku)
        product.holds[data["order_id"]] = quantity
        view = replace(view, available=view.available - quantity, reserved=view.reserved + quantity)
    elif kind == InventoryReleased.TYPE:
        quantity = product.holds.pop(data["order_id"], 0)
        view = replace(view, available=view.available + quantity, reserved=view.reserved - quantity)
    elif kind == InventoryConsumed.TYPE:
        view = replace(view, reserved=view.reserved - product.holds.pop(data["order_id"], 0))
    product.view = replace(view, version=event.version, updated_at=event.recorded_at)
    return product


class ProductProjection(Projection):
    name = "products"
    event_types = (
        ProductRegistered.TYPE,
        ProductRestocked.TYPE,
        InventoryReserved.TYPE,
        InventoryReleased.TYPE,
        InventoryConsumed.TYPE,
    )
    tables = ("product_views", "product_holds")

    async def apply(self, conn: asyncpg.Connection, events: Sequence[LogEvent]) -> None:
        by_sku: dict[str, list[LogEvent]] = {}
        for event in events:
            if event.stream_id.startswith(PRODUCT_STREAM_PREFIX):
                by_sku.setdefault(event.stream_id[len(PRODUCT_STREAM_PREFIX) :], []).append(event)
        if not by_sku:
            return
        products = await self._load(conn, list(by_sku))
        before = {sku: dict(p.holds) for sku, p in products.items()}
        changed: dict[str, _Product] = {}
        for sku, product_events in by_sku.items():
            product = products.get(sku)
            stored_version = product.view.version if product is not None else 0
            for event in product_events:
                if event.version <= stored_version:
                    continue  # already applied
                product = _fold(product, event)
            if product is not None and product.view.version != stored_version:
                changed[sku] = product
        await self._write(conn, changed, before)

    async def _load(self, conn: asyncpg.Connection, skus: list[str]) -> dict[str, _Product]:
        rows = await conn.fetch(
            f"""
            SELECT p.*, h.orders, h.quantities FROM {self.table("product_views")} p
            LEFT JOIN LATERAL (
                SELECT array_agg(order_id) AS orders, array_agg(quantity) AS quantities
                FROM {self.table("product_holds")} WHERE sku = p.sku
            ) h ON true
            WHERE p.sku = ANY($1::text[])
            """,
            skus,
        )
        return {
            r["sku"]: _Product(
                ProductView(
                    r["sku"], r["name"], r["price"], r["currency"], r["available"], r["reserved"],
                    r["version"], r["updated_at"],
                ),
                dict(zip(r["orders"] or (), r["quantities"] or (), strict=True)),
            )
            for r in rows
        }

    async def _write(
        self, conn: asyncpg.Connection, changed: dict[str, _Product], before: dict[str, dict[str, int]]
    ) -> None:
        if not changed:
            return
        views = [p.view for p in changed.values()]
        await conn.execute(
            f"""
            INSERT INTO {self.table("product_views")} AS t
                (sku, name, price, currency, available, reserved, version, updated_at)
            SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[], $4::text[], $5::int[],
                                 $6::int[], $7::int[], $8::timestamptz[])
            ON CONFLICT (sku) DO UPDATE SET
                name = excluded.name, price = excluded.price, currency = excluded.currency,
                available = excluded.available, reserved = excluded.reserved,
                version = excluded.version, updated_at = excluded.updated_at
            """,
            [v.sku for v in views], [v.name for v in views], [v.price for v in views],
            [v.currency for v in views], [v.available for v in views], [v.reserved for v in views],
            [v.version for v in views], [v.updated_at for v in views],
        )
        gone = [(sku, o) for sku, p in changed.items() for o in before.get(sku, {}) if o not in p.holds]
        new = [(sku, o, q) for sku, p in changed.items() for o, q in p.holds.items() if o not in before.get(sku, {})]
        if gone:
            await conn.execute(
                f"DELETE FROM {self.table('product_holds')} WHERE (sku, order_id) IN"
                " (SELECT * FROM unnest($1::text[], $2::text[]))",
                [g[0] for g in gone], [g[1] for g in gone],
            )
        if new:
            await conn.execute(
                f"INSERT INTO {self.table('product_holds')} (sku, order_id, quantity)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::int[])",
                [n[0] for n in new], [n[1] for n in new], [n[2] for n in new],
            )


class ProductReadModel:
    def __init__(self, pool: Pool | ReadPools) -> None:
        self._reads = read_pools(pool)

    async def by_skus(self, skus: Sequence[str], source: Pool | None = None) -> dict[str, ProductView]:
        rows = await self._reads.fetch(
            "SELECT sku, name, price, currency, available, reserved, version, updated_at"
            " FROM product_views WHERE sku = ANY($1::text[])",
            list(skus),
            prefer=source,
        )
        return {r["sku"]: ProductView(*r) for r in rows}
