"""Rebuilding the orders projection while the live one serves and follows."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from domain.commands import AddItem, CreateOrder
from eventstore import NOTIFY_CHANNEL
from eventstore.pool import Pool
from readmodels.checkpoints import LEASE_NAMESPACE, PROJECTIONS_CHANNEL
from readmodels.notices import Notices
from readmodels.orders import OrderProjection
from readmodels.rebuild import RebuildBusy, RebuildProgress, rebuild
from readmodels.runner import ProjectionRunner
from service.container import Services, build_upcasters
from tests.conftest import lines_compression
from tests.projection_helpers import STAFF, aggregate_views, random_orders, run_to_head


async def _storage_options(pool: Pool) -> list[str] | None:
    return await pool.fetchval("SELECT reloptions FROM pg_class WHERE oid = 'order_views'::regclass")


async def _index_names(pool: Pool) -> set[str]:
    rows = await pool.fetch(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'order_views'"
    )
    return {r["indexname"] for r in rows}


async def test_rebuild_swaps_in_fresh_tables_while_reads_and_writes_go_on(services: Services, dsn: str) -> None:
    ids = await random_orders(services, 10)
    await run_to_head(dsn)
    compression = await lines_compression(services.pool)
    indexes = await _index_names(services.pool)
    assert await _storage_options(services.pool) == ["fillfactor=70"]  # migration 0008
    # Damage the live tables the way a projection bug would: the rebuild must repair them.
    await services.pool.execute("UPDATE order_views SET status = 'CANCELLED'")
    notices = Notices(dsn, [NOTIFY_CHANNEL, PROJECTIONS_CHANNEL])
    stop = asyncio.Event()
    runner = ProjectionRunner(dsn, [OrderProjection()], build_upcasters(), notices)
    live = asyncio.create_task(runner.run(stop))
    reads: list[int] = []
    writing = True

    async def keep_reading_and_writing() -> None:
        n = 0
        while writing:
            page = await services.read_models.orders.page(customer_id=None, status=None, first=5, after=None)
            reads.append(len(page.items))
            order = await services.execute(STAFF, CreateOrder(customer_id="cus_9"))
            await services.execute(STAFF, AddItem(order_id=order.aggregate.id, sku=f"S{n}", quantity=1, unit_price="1"))
            ids.append(order.aggregate.id)
            n += 1

    traffic = asyncio.create_task(keep_reading_and_writing())
    progress: list[RebuildProgress] = []
    try:
        await asyncio.sleep(0.2)
        final = await rebuild(dsn, OrderProjection, build_upcasters(), batch_size=20, on_progress=progress.append)
        writing = False
        await traffic
        assert final.done and final.events > 0 and len(progress) > 2
        assert all(n == 5 for n in reads)  # the live tables answered throughout
        # The live runner carries on from the swapped-in checkpoint.
        late = await services.execute(STAFF, CreateOrder(customer_id="cus_9"))
        waited = await services.read_models.consistent_with("orders", late.position, within=10)
        assert not waited.stale
        ids.append(late.aggregate.id)
        assert await services.read_models.orders.by_ids(ids) == await aggregate_views(services, ids)
    finally:
        writing = False
        await asyncio.gather(traffic, return_exceptions=True)
        stop.set()
        await live
        await notices.close()
    assert await _index_names(services.pool) == indexes
    assert await _storage_options(services.pool) == ["fillfactor=70"]  # carried over to the new table
    assert await lines_compression(services.pool) == compression  # lz4, where the server has it
    leftovers = await services.pool.fetchval("SELECT count(*) FROM pg_tables WHERE tablename LIKE '%rebuild%'")
    names = [r["name"] for r in await services.pool.fetch("SELECT name FROM projection_checkpoints")]
    assert leftovers == 0 and names == ["orders"]


async def test_one_rebuild_at_a_time(services: Services, dsn: str) -> None:
    holder = await asyncpg.connect(dsn)
    try:
        await holder.execute("SELECT pg_advisory_lock($1, hashtext('orders__rebuild'))", LEASE_NAMESPACE)
        with pytest.raises(RebuildBusy):
            await rebuild(dsn, OrderProjection, build_upcasters())
    finally:
        await holder.close()


async def test_rebuild_of_an_empty_log_and_after_a_crashed_rebuild(services: Services, dsn: str) -> None:
    await services.pool.execute("CREATE TABLE order_views__rebuild (junk int)")  # a crashed rebuild's leftover
    final = await rebuild(dsn, OrderProjection, build_upcasters())
    assert final.done and final.position == 0 and final.events == 0
    ids = await random_orders(services, 3)
    final = await rebuild(dsn, OrderProjection, build_upcasters())
    assert final.position == await services.events.head_position()
    assert await services.read_models.orders.by_ids(ids) == await aggregate_views(services, ids)
