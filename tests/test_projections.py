"""The orders projection: folds equal the aggregate's, batches apply exactly once in effect."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from domain.commands import AddItem, CreateOrder
from eventstore import AppendRequest, NewEvent, StreamWrite
from eventstore.pool import connect
from readmodels.checkpoints import advance, position_of
from readmodels.log import read_batch
from readmodels.orders import OrderProjection
from readmodels.projection import LogEvent
from readmodels.rebuild import rebuild
from readmodels.runner import Follower
from service.container import Services, build_upcasters
from tests.conftest import count_rows
from tests.projection_helpers import (
    STAFF,
    aggregate_views,
    random_orders,
    run_to_head,
    table_rows,
)


async def test_read_views_equal_the_aggregates_folded_from_the_store(services: Services, dsn: str) -> None:
    ids = await random_orders(services, 12)
    await run_to_head(dsn, batch=7)  # small batches: orders span several of them
    views = await services.read_models.orders.by_ids(ids)
    assert views == await aggregate_views(services, ids)
    assert {v.status for v in views.values()} >= {"DRAFT", "SUBMITTED"}


@pytest.mark.parametrize("rebuild_batch", [10_000, 3], ids=["one-pass", "small-batches"])
async def test_incremental_batches_equal_a_rebuild_from_scratch(
    services: Services, dsn: str, rebuild_batch: int
) -> None:
    ids = await random_orders(services, 8, seed=1)
    await run_to_head(dsn, batch=5)
    ids += await random_orders(services, 8, seed=2)  # more writes on top of applied state
    for order_id in ids:
        if (await services.orders.order_at(STAFF, order_id)).status.value == "DRAFT":
            await services.execute(STAFF, AddItem(order_id=order_id, sku="LATE", quantity=1, unit_price="1"))
    await run_to_head(dsn, batch=3)
    incremental = await table_rows(dsn)
    assert len(incremental) == 16 and any(row["lines"] != "{}" for row in incremental)
    # In small batches an order's events straddle batches read ahead of the last write.
    rebuilt = await rebuild(dsn, OrderProjection, build_upcasters(), batch_size=rebuild_batch)
    assert rebuilt.done and rebuilt.events == await _order_event_count(dsn)
    assert await table_rows(dsn) == incremental  # the same rows, column for column


async def _order_event_count(dsn: str) -> int:
    return await count_rows(dsn, "SELECT count(*) FROM events WHERE stream_id LIKE 'order-%'")


async def test_old_event_versions_are_projected_upcast(services: Services, dsn: str) -> None:
    await services.appender.append(
        AppendRequest(
            [
                StreamWrite(
                    "order-legacy_1",
                    [
                        NewEvent("order.created.v1", {"customer_id": "cus_1"}, {}),
                        NewEvent("item.added.v1", {"item_id": "A", "quantity": 3, "price": 0.1}, {}),
                    ],
                    owner="cus_1",
                )
            ]
        )
    )
    await run_to_head(dsn)
    view = (await services.read_models.orders.by_ids(["legacy_1"]))["legacy_1"]
    assert view.currency == "USD"
    assert [(line.sku, str(line.unit_price), str(line.discount)) for line in view.lines] == [("A", "0.1", "0")]
    assert str(view.total) == "0.3"


async def _log(dsn: str) -> list[LogEvent]:
    conn = await connect(dsn)
    try:
        follower = Follower(OrderProjection(), build_upcasters())
        events, _, _ = await read_batch(conn, build_upcasters(), follower._stored_types, 0, 10_000)
        return events
    finally:
        await conn.close()


async def test_applying_the_same_batch_twice_changes_nothing(services: Services, dsn: str) -> None:
    await random_orders(services, 6)
    events = await _log(dsn)
    halves = [events[: len(events) // 2], events[len(events) // 2 :]]
    conn = await connect(dsn)
    try:
        for half in halves:
            await OrderProjection().apply(conn, half)
            once = await table_rows(dsn)
            await OrderProjection().apply(conn, half)
            assert await table_rows(dsn) == once
        await OrderProjection().apply(conn, events)  # a whole replay of what is applied
        assert await table_rows(dsn) == once
    finally:
        await conn.close()


class _CrashingProjection(OrderProjection):
    """Kills its own connection after writing part of the batch: a process dying mid-batch."""

    async def apply(self, conn: asyncpg.Connection, events: Sequence[LogEvent]) -> None:
        await super().apply(conn, events[: len(events) // 2])
        killer = await asyncpg.connect(self.dsn)
        try:
            await killer.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        finally:
            await killer.close()
        await super().apply(conn, events[len(events) // 2 :])

    dsn = ""


async def test_a_crash_mid_batch_leaves_nothing_and_the_retry_converges(services: Services, dsn: str) -> None:
    ids = await random_orders(services, 6)
    crashing = _CrashingProjection()
    crashing.dsn = dsn
    conn = await connect(dsn)
    await conn.execute("INSERT INTO projection_checkpoints (name) VALUES ('orders') ON CONFLICT DO NOTHING")
    follower = Follower(crashing, build_upcasters())
    crashed = False
    try:
        await follower.step(conn, 10_000)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        crashed = True
    assert crashed and conn.is_closed()
    assert await table_rows(dsn) == []
    check = await asyncpg.connect(dsn)
    assert await check.fetchval("SELECT position FROM projection_checkpoints WHERE name = 'orders'") == 0
    await check.close()
    await run_to_head(dsn, batch=10_000)
    assert await services.read_models.orders.by_ids(ids) == await aggregate_views(services, ids)


async def test_the_checkpoint_moves_past_events_of_other_streams(services: Services, dsn: str) -> None:
    await random_orders(services, 2)
    await services.appender.append(
        AppendRequest([StreamWrite(f"other-{uuid.uuid4()}", [NewEvent("thing.happened.v1", {}, {})])])
    )
    head = await services.events.head_position()
    assert await run_to_head(dsn) == head


async def test_batches_scan_a_bounded_window_and_skip_nothing(services: Services, dsn: str) -> None:
    """A batch looks at most a few positions per event asked for: past a long run of
    other events the checkpoint moves in steps, and every event of the projection's
    types is still read, in order."""
    from readmodels.log import SCAN_WINDOW_PER_EVENT

    await random_orders(services, 2, seed=3)
    noise = [NewEvent("thing.happened.v1", {"n": n}, {}) for n in range(60)]
    await services.appender.append(AppendRequest([StreamWrite(f"other-{uuid.uuid4()}", noise)]))
    await random_orders(services, 2, seed=4)
    follower = Follower(OrderProjection(), build_upcasters())
    conn = await connect(dsn)
    try:
        expected = [
            r["position"]
            for r in await conn.fetch(
                "SELECT position FROM events WHERE stream_id LIKE 'order-%' ORDER BY position"
            )
        ]
        seen, after, steps = [], 0, []
        while True:
            events, upto, head = await follower.read(conn, after, 5)
            if upto == after:
                break
            steps.append(upto - after)
            seen += [e.position for e in events]
            after = upto
    finally:
        await conn.close()
    assert seen == expected
    assert after == head
    assert max(steps) <= 5 * SCAN_WINDOW_PER_EVENT
    assert steps.count(5 * SCAN_WINDOW_PER_EVENT) >= 60 // (5 * SCAN_WINDOW_PER_EVENT)  # the run of others


async def test_projection_connections_plan_each_statement_for_its_arguments(dsn: str) -> None:
    from readmodels.runner import projection_connection

    conn = await projection_connection(dsn)
    try:
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
    finally:
        await conn.close()


async def test_a_batch_of_none_of_its_types_moves_the_checkpoint_only_from_where_it_was_read(
    services: Services, dsn: str
) -> None:
    """Such a batch is written without a transaction, as a compare-and-set: if the checkpoint
    moved between the read and the write (a rebuild's swap), the batch is dropped and read again."""
    await services.appender.append(
        AppendRequest([StreamWrite(f"other-{uuid.uuid4()}", [NewEvent("thing.happened.v1", {}, {})])])
    )
    head = await services.events.head_position()
    follower = Follower(OrderProjection(), build_upcasters())
    conn, other = await connect(dsn), await connect(dsn)
    try:
        await conn.execute("INSERT INTO projection_checkpoints (name) VALUES ('orders') ON CONFLICT DO NOTHING")
        assert not await advance(conn, "orders", head, expected=head + 1)  # it is at 0: refused
        assert await position_of(conn, "orders") == 0
        statements: list[str] = []
        conn.add_query_logger(lambda query: statements.append(query.query))
        batch = await follower.step(conn, 10)
        await asyncio.sleep(0)  # the logger is called soon after each statement
        assert len(statements) == 1  # read and moved in one statement
        assert (batch.events, batch.before, batch.after, batch.head) == (0, 0, head, head)
        assert await position_of(other, "orders") == head
        idle = await follower.step(conn, 10)  # nothing new: one read, nothing written
        await asyncio.sleep(0)
        assert (idle.events, idle.before, idle.after, idle.more) == (0, head, head, False)
        assert len(statements) == 2
    finally:
        await conn.close()
        await other.close()


class _NeverApplied(OrderProjection):
    """Fails if applied: the test moves the checkpoint between the batch's read and its write."""

    async def apply(self, conn: asyncpg.Connection, events: Sequence[LogEvent]) -> None:
        raise AssertionError("a batch whose checkpoint moved must not be applied")


async def test_a_batch_whose_checkpoint_moved_after_its_read_is_not_applied(services: Services, dsn: str) -> None:
    await random_orders(services, 2)
    head = await services.events.head_position()
    follower = Follower(_NeverApplied(), build_upcasters())
    conn = await connect(dsn)
    other = await connect(dsn)
    try:
        await conn.execute("INSERT INTO projection_checkpoints (name) VALUES ('orders') ON CONFLICT DO NOTHING")
        read = follower.read_from_checkpoint

        async def read_then_move(*args: object) -> object:
            batch = await read(*args)  # type: ignore[arg-type]
            await other.execute("UPDATE projection_checkpoints SET position = 1 WHERE name = 'orders'")
            return batch

        follower.read_from_checkpoint = read_then_move  # type: ignore[method-assign]
        batch = await follower.step(conn, 10_000)
        assert (batch.events, batch.before, batch.after, batch.more) == (0, 0, 0, True)  # read again
        assert await position_of(conn, "orders") == 1 and head > 1
    finally:
        await conn.close()
        await other.close()


@pytest.mark.parametrize("plans", ["force_custom_plan", "force_generic_plan"])
async def test_a_step_far_into_a_long_log_touches_only_its_window(dsn: str, plans: str) -> None:
    """The step's statement visits the events after the checkpoint and no earlier one (a
    plan that walked the log from its start to the checkpoint cost 45 ms at 50,000 events)."""
    from readmodels.checkpoints import PROJECTIONS_CHANNEL
    from readmodels.log import _STEP_READ

    conn = await connect(dsn)
    try:
        await conn.execute(  # a long log, written directly: only its shape matters here
            "INSERT INTO events (position, event_id, stream_id, version, type, data, metadata, recorded_at)"
            " SELECT n, gen_random_uuid(), 'thing-' || n, 1, 'test.happened.v1', '{}', '{}', now()"
            " FROM generate_series(1, 20000) n"
        )
        await conn.execute("INSERT INTO projection_checkpoints (name, position) VALUES ('probe', 19990)")
        await conn.execute("ANALYZE events")  # as autovacuum leaves a log that size
        await conn.execute(f"SET plan_cache_mode = {plans}")
        explain = "EXPLAIN (ANALYZE, FORMAT JSON) " + _STEP_READ
        [plan] = await conn.fetchval(explain, "probe", ["test.happened.v1"], 100, PROJECTIONS_CHANNEL)  # decoded
    finally:
        await conn.close()

    def visited(node: dict[str, Any]) -> list[int]:
        own = [node["Actual Rows"] * node["Actual Loops"]] if node.get("Relation Name") == "events" else []
        return own + [v for child in node.get("Plans", []) for v in visited(child)]

    assert 0 < max(visited(plan["Plan"])) <= 10


# Remembered rows (readmodels/orders.py, REMEMBERED ORDERS)


async def _draft_orders(services: Services, count: int) -> list[str]:
    ids = []
    for i in range(count):
        created = await services.execute(STAFF, CreateOrder(customer_id=f"cus_{i}"))
        ids.append(created.aggregate.id)
    return ids


async def _add_line(services: Services, ids: list[str], sku: str, price: str = "2.50") -> None:
    for order_id in ids:
        await services.execute(STAFF, AddItem(order_id=order_id, sku=sku, quantity=2, unit_price=price))


async def test_rows_another_process_wrote_since_are_loaded_not_folded_from_memory(
    services: Services, dsn: str
) -> None:
    ids = await _draft_orders(services, 3)
    await _add_line(services, ids, "FIRST")
    remembering = OrderProjection()
    await run_to_head(dsn, remembering)
    assert remembering.remembered_lines == 3
    await _add_line(services, ids, "SECOND", "1.25")
    await run_to_head(dsn, OrderProjection())  # the lease moved to another process meanwhile
    await _add_line(services, ids, "FIRST")  # a version this one does not remember the row at
    await run_to_head(dsn, remembering)
    views = await services.read_models.orders.by_ids(ids)
    assert views == await aggregate_views(services, ids)
    assert {v.total for v in views.values()} == {Decimal("12.50")}


async def test_a_batch_of_orders_it_wrote_before_reads_no_row_back(services: Services, dsn: str) -> None:
    ids = await _draft_orders(services, 4)
    follower = Follower(OrderProjection(), build_upcasters())
    conn = await connect(dsn)
    try:
        await conn.execute("INSERT INTO projection_checkpoints (name) VALUES ('orders') ON CONFLICT DO NOTHING")
        assert (await follower.step(conn, 100)).events == 4
        await _add_line(services, ids, "A")
        await _add_line(services, ids, "A")  # the same line again: its quantity is remembered
        statements: list[str] = []
        conn.add_query_logger(lambda query: statements.append(query.query))
        assert (await follower.step(conn, 100)).events == 8
        await asyncio.sleep(0)
        assert [s for s in statements if "order_views" in s and "INSERT" not in s] == []
        assert len([s for s in statements if "INSERT INTO order_views" in s]) == 1
    finally:
        await conn.close()
    views = await services.read_models.orders.by_ids(ids)
    assert views == await aggregate_views(services, ids)
    assert {v.total for v in views.values()} == {Decimal("10.00")}


async def test_memory_is_bounded_and_what_it_forgets_is_loaded_again(services: Services, dsn: str) -> None:
    ids = await _draft_orders(services, 4)
    await _add_line(services, ids, "A")
    await _add_line(services, ids, "B")
    small = OrderProjection(remember_lines=3)
    await run_to_head(dsn, small, batch=5)
    assert small.remembered_lines == 2  # the order written last; the three before, forgotten
    await _add_line(services, ids, "A")
    await run_to_head(dsn, small, batch=5)
    assert small.remembered_lines == 2
    assert await services.read_models.orders.by_ids(ids) == await aggregate_views(services, ids)


class _FailingOnce(OrderProjection):
    """Writes its second batch, then fails: the batch rolls back after rows were written."""

    batches = 0

    async def apply(self, conn: asyncpg.Connection, events: Sequence[LogEvent]) -> None:
        await super().apply(conn, events)
        self.batches += 1
        if self.batches == 2:
            raise RuntimeError("a bug after the writes")


async def test_a_rolled_back_batch_is_not_remembered_and_its_retry_converges(services: Services, dsn: str) -> None:
    ids = await _draft_orders(services, 3)
    projection = _FailingOnce()
    follower = Follower(projection, build_upcasters())
    conn = await connect(dsn)
    try:
        await conn.execute("INSERT INTO projection_checkpoints (name) VALUES ('orders') ON CONFLICT DO NOTHING")
        await follower.step(conn, 100)
        assert projection.remembered_lines == 0 and (await table_rows(dsn))
        await _add_line(services, ids, "B")
        with pytest.raises(RuntimeError):
            await follower.step(conn, 100)
        assert projection.remembered_lines == 0  # forgotten, as the rows it wrote
        assert {r["line_count"] for r in await table_rows(dsn)} == {0}
        await follower.step(conn, 100)
        assert projection.remembered_lines == 3
    finally:
        await conn.close()
    assert await services.read_models.orders.by_ids(ids) == await aggregate_views(services, ids)
