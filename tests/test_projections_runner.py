"""The runner across processes' worth of connections: one leaseholder, takeover, wakeups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest

from domain.commands import CreateOrder
from eventstore import NOTIFY_CHANNEL
from readmodels.checkpoints import PROJECTIONS_CHANNEL
from readmodels.notices import Notices
from readmodels.orders import OrderProjection
from readmodels.projection import LogEvent
from readmodels.runner import ProjectionRunner
from service.container import Services, build_upcasters
from tests.projection_helpers import STAFF, aggregate_views, random_orders


class _Recording(OrderProjection):
    """Also records each applied position with the runner's label, in the same transaction.

    The primary key on `position` makes a second apply of any event fail, so a
    run that completes proves every event was applied exactly once.
    """

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    async def apply(self, conn: asyncpg.Connection, events: Sequence[LogEvent]) -> None:
        await super().apply(conn, events)
        await conn.execute(
            "INSERT INTO applied_positions (position, runner) SELECT unnest($1::bigint[]), $2",
            [e.position for e in events],
            self.label,
        )


@pytest.fixture
async def applied_table(dsn: str) -> AsyncIterator[None]:
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE applied_positions (position bigint PRIMARY KEY, runner text NOT NULL)")
    yield
    await conn.execute("DROP TABLE applied_positions")
    await conn.close()


class _Process:
    """A runner as a separate process would have it: its own connections and listener."""

    def __init__(self, dsn: str, label: str, **options: float) -> None:
        self.notices = Notices(dsn, [NOTIFY_CHANNEL, PROJECTIONS_CHANNEL])
        self.runner = ProjectionRunner(dsn, [_Recording(label)], build_upcasters(), self.notices, **options)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.runner.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await self.task
        await self.notices.close()


async def _until(condition, seconds: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.05)):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def _checkpoint(services: Services) -> int:
    return int(await services.pool.fetchval("SELECT position FROM projection_checkpoints WHERE name = 'orders'") or 0)


async def test_two_runners_one_applies_the_other_takes_over_when_it_dies(
    services: Services, dsn: str, applied_table: None
) -> None:
    first = _Process(dsn, "first")
    await _until(lambda: _leased(first))
    second = _Process(dsn, "second")
    try:
        ids = await random_orders(services, 6)
        head = await services.events.head_position()
        await _until(lambda: _reached(services, head))
        runners = {r["runner"] for r in await services.pool.fetch("SELECT DISTINCT runner FROM applied_positions")}
        assert runners == {"first"} and not second.runner.leased
        # The leaseholder's process dies: its backend goes, and the lease with it.
        await services.pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::int::oid"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            0x70726F6A,
        )
        await first.close()
        ids += await random_orders(services, 4, seed=3)
        head = await services.events.head_position()
        await _until(lambda: _reached(services, head), seconds=5.0)  # takeover within 5 s
        assert second.runner.leased == {"orders"}
        positions = await services.pool.fetch("SELECT position, runner FROM applied_positions ORDER BY position")
        order_events = await services.pool.fetchval("SELECT count(*) FROM events WHERE stream_id LIKE 'order-%'")
        assert len(positions) == order_events  # none skipped; the primary key forbids twice
        assert {r["runner"] for r in positions} == {"first", "second"}
        assert await services.read_models.orders.by_ids(ids) == await aggregate_views(services, ids)
    finally:
        await second.close()
        await first.close()


async def _leased(process: _Process) -> bool:
    return bool(process.runner.leased)


async def _reached(services: Services, head: int) -> bool:
    return await _checkpoint(services) >= head


async def test_notify_wakes_the_runner_long_before_its_poll(services: Services, dsn: str, applied_table: None) -> None:
    process = _Process(dsn, "only", poll_interval=3600.0)
    try:
        await _until(lambda: _leased(process))
        await asyncio.sleep(0.2)  # let it reach its wait
        created = await services.execute(STAFF, CreateOrder(customer_id="cus_1"))
        waited = await services.read_models.consistent_with("orders", created.position, within=10.0)
        assert not waited.stale
    finally:
        await process.close()


async def test_without_notifications_polling_catches_up_after_downtime(
    services: Services, dsn: str, applied_table: None
) -> None:
    ids = await random_orders(services, 4)  # written while no runner was up
    deaf = Notices("postgresql://127.0.0.1:1/nowhere", [NOTIFY_CHANNEL, PROJECTIONS_CHANNEL])
    runner = ProjectionRunner(dsn, [_Recording("deaf")], build_upcasters(), deaf, poll_interval=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        head = await services.events.head_position()
        await _until(lambda: _reached(services, head))
        ids += await random_orders(services, 2, seed=5)
        head = await services.events.head_position()
        await _until(lambda: _reached(services, head))
        assert await services.read_models.orders.by_ids(ids) == await aggregate_views(services, ids)
    finally:
        stop.set()
        await task
        await deaf.close()


class _Poisoned(OrderProjection):
    async def apply(self, conn: asyncpg.Connection, events: Sequence[LogEvent]) -> None:
        await super().apply(conn, events)
        raise RuntimeError("a bug in the projection")


async def test_a_failing_projection_stops_at_its_checkpoint_and_says_so(services: Services, dsn: str) -> None:
    await random_orders(services, 2)
    notices = Notices(dsn, [NOTIFY_CHANNEL, PROJECTIONS_CHANNEL])
    runner = ProjectionRunner(dsn, [_Poisoned()], build_upcasters(), notices, failure_pause=60.0)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        async def failed() -> bool:
            return (await _orders_status(services)).state == "failed"

        await _until(failed)
        status = await _orders_status(services)
        assert status.position == 0 and status.lag == await services.events.head_position()
        assert status.error == "RuntimeError: a bug in the projection"
        assert await services.pool.fetchval("SELECT count(*) FROM order_views") == 0
    finally:
        stop.set()
        await task
        await notices.close()


async def _orders_status(services: Services):  # type: ignore[no-untyped-def]
    return next(s for s in await services.read_models.statuses() if s.name == "orders")
