"""The products and wallets projections: equal to the aggregates, replays change nothing."""

from __future__ import annotations

import asyncpg

from domain.commands import RestockProduct
from readmodels.products import ProductProjection
from readmodels.rebuild import rebuild
from readmodels.wallets import WalletProjection
from service.container import Services, build_upcasters
from service.saga.reactions import Inventory
from service.saga.tracked import TrackedAppends
from tests.projection_helpers import run_to_head
from tests.relay_support import eventually
from tests.saga_support import (
    deposit,
    place_order,
    product,
    saga,
    settled,
    staff,
    stock,
    wallet,
)


async def _history(services: Services, broker) -> None:  # type: ignore[no-untyped-def]
    """Reservations that complete, fail payment, run out of stock, and one still held."""
    client, key = broker
    await stock(services, A=10, B=5, C=1)
    await deposit(services, "cus_1", "30.00")
    await deposit(services, "cus_2", "1.00")
    async with saga(services, client, key):
        await place_order(services, "ord_1", {"A": (2, "10.00"), "B": (1, "5.00")})  # completes
        await place_order(services, "ord_2", {"A": (1, "10.00")}, customer_id="cus_2")  # payment fails
        await place_order(services, "ord_3", {"C": (2, "1.00")})  # out of stock
        for order_id in ("ord_1", "ord_2", "ord_3"):
            await settled(services, order_id)

        async def settled_stock() -> bool:
            a = await product(services, "A")
            return (a.available, a.reserved) == (8, 0)

        await eventually(settled_stock)
    await services.execute(staff(), RestockProduct(sku="C", quantity=4))


async def _rows(dsn: str) -> tuple[list[asyncpg.Record], ...]:
    conn = await asyncpg.connect(dsn)
    try:
        return (
            await conn.fetch("SELECT * FROM product_views ORDER BY sku"),
            await conn.fetch("SELECT * FROM product_holds ORDER BY sku, order_id"),
            await conn.fetch("SELECT * FROM wallet_views ORDER BY customer_id"),
        )
    finally:
        await conn.close()


async def test_read_tables_equal_the_aggregates_and_replays_change_nothing(
    services: Services, dsn: str, broker
) -> None:
    await _history(services, broker)
    for projection in (ProductProjection(), WalletProjection()):
        await run_to_head(dsn, projection, batch=3)  # small batches: streams span several
    views = await services.read_models.products.by_skus(["A", "B", "C", "Z"])
    assert sorted(views) == ["A", "B", "C"]
    for sku, view in views.items():
        aggregate = await product(services, sku)
        assert (view.available, view.reserved, view.version) == (
            aggregate.available, aggregate.reserved, aggregate.version
        )
        assert (view.name, str(view.price), view.currency) == (f"Product {sku}", "1.00", "USD")
    assert [(views[s].available, views[s].reserved) for s in "ABC"] == [(8, 0), (4, 0), (5, 0)]
    wallets = await services.read_models.wallets.by_customers(["cus_1", "cus_2", "cus_9"])
    assert {c: str(w.balance) for c, w in wallets.items()} == {"cus_1": "5.00", "cus_2": "1.00"}
    assert wallets["cus_1"].version == (await wallet(services, "cus_1")).version

    before = await _rows(dsn)
    conn = await asyncpg.connect(dsn)
    try:  # replay everything: versions already applied are skipped
        await conn.execute("UPDATE projection_checkpoints SET position = 0 WHERE name IN ('products', 'wallets')")
    finally:
        await conn.close()
    for projection in (ProductProjection(), WalletProjection()):
        await run_to_head(dsn, projection, batch=5)
    assert await _rows(dsn) == before


async def test_a_held_reservation_shows_as_reserved(services: Services, dsn: str, broker) -> None:
    client, key = broker
    await stock(services, A=5)
    await deposit(services, "cus_1", "100.00")

    inventory_only = [Inventory(TrackedAppends(services.appender, services.reader))]
    async with saga(services, client, key, reactions=inventory_only):
        await place_order(services, "ord_1", {"A": (3, "1.00")})

        async def held() -> bool:
            return (await product(services, "A")).reserved == 3

        await eventually(held)
    await run_to_head(dsn, ProductProjection())
    view = (await services.read_models.products.by_skus(["A"]))["A"]
    assert (view.available, view.reserved) == (2, 3)
    _, holds, _ = await _rows(dsn)
    assert [(h["sku"], h["order_id"], h["quantity"]) for h in holds] == [("A", "ord_1", 3)]


async def test_a_rebuild_repairs_damaged_product_and_wallet_tables(services: Services, dsn: str, broker) -> None:
    await _history(services, broker)
    for projection in (ProductProjection(), WalletProjection()):
        await run_to_head(dsn, projection)
    good = await _rows(dsn)
    await services.pool.execute("UPDATE product_views SET available = -1; DELETE FROM product_holds")
    await services.pool.execute("UPDATE wallet_views SET balance = 0")
    for cls in (ProductProjection, WalletProjection):
        progress = await rebuild(dsn, cls, build_upcasters(), batch_size=4)
        assert progress.done
    assert await _rows(dsn) == good
