"""The outbox relay against real PostgreSQL and real Redis: order, format, faults, leases."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import redis.asyncio as redis

from eventstore import NOTIFY_CHANNEL, AppendRequest, ConcurrencyConflict, NewEvent, StreamWrite
from eventstore.outbox import backlog, purge_published
from readmodels.notices import Notices
from service.container import Services, build_upcasters
from service.relay import OutboxRelay
from tests.relay_support import RedisProcess, append_events, entries, eventually, private_stream_key


def make_relay(services: Services, client: redis.Redis, key: str, **kwargs: object) -> OutboxRelay:
    return OutboxRelay(services.dsn, client, build_upcasters(), stream_key=key, poll_interval=0.2, **kwargs)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def published_positions(services: Services) -> list[int]:
    rows = await services.pool.fetch(
        "SELECT position FROM outbox WHERE position <= (SELECT max(through) FROM outbox_published) ORDER BY 1"
    )
    return [r[0] for r in rows]


async def test_a_published_batch_is_marked_by_one_row_and_the_outbox_rows_are_left_as_written(
    services: Services, broker
) -> None:
    """Each batch records how far it published (`outbox_published`), one row, in the statement
    after the publish: the outbox rows themselves are never updated (rewriting each one
    cost the database more than the rest of the relay's work for it)."""
    client, key = broker
    await append_events(services.appender, 30)
    written = await services.pool.fetch("SELECT position, xmin::text FROM outbox ORDER BY 1")
    async with running(make_relay(services, client, key, batch_size=7)):
        await eventually(lambda: _backlog_is(services, 0))
    marks = await services.pool.fetch("SELECT through FROM outbox_published ORDER BY 1")
    assert [r[0] for r in marks] == [7, 14, 21, 28, 30]
    assert await services.pool.fetch("SELECT position, xmin::text FROM outbox ORDER BY 1") == written


async def test_publishes_every_event_in_order_in_the_contract_format(services: Services, broker) -> None:
    client, key = broker
    await append_events(services.appender, 30)
    relay = make_relay(services, client, key, batch_size=7)
    async with running(relay):
        await append_events(services.appender, 20)  # while it runs: woken by NOTIFY
        await eventually(lambda: _backlog_is(services, 0))
    published = await entries(client, key)
    stored = await services.reader.read_all(0, 1000)
    assert [e["position"] for e in published] == [str(e.position) for e in stored] == [str(p) for p in range(1, 51)]
    first, event = published[0], stored[0]
    assert first == {
        "event_id": str(event.event_id),
        "event_type": "test.happened.v1",
        "stream_id": "thing-0",
        "version": 1,
        "position": "1",
        "data": {"n": 0},
        "metadata": {"correlation_id": "c"},
        "recorded_at": event.recorded_at.isoformat(),  # as the event API writes it
    }
    assert await published_positions(services) == list(range(1, 51))


async def test_the_time_of_an_event_is_written_as_isoformat_writes_it(services: Services, broker) -> None:
    """The database writes each entry's JSON (eventstore/outbox.py): its `recorded_at` must
    read exactly as Python's isoformat() of the stored time, with or without microseconds."""
    client, key = broker
    await append_events(services.appender, 4)
    times = ["2026-01-02 03:04:05+00", "2026-01-02 03:04:05.00012+00", "2026-01-02 03:04:05.5+05:30", "1999-12-31 23:59:59.999999-08"]
    for position, time in enumerate(times, start=1):  # a test may rewrite the log; the service never does
        await services.pool.execute("UPDATE events SET recorded_at = $2::text::timestamptz WHERE position = $1", position, time)
    relay = make_relay(services, client, key)
    async with running(relay):
        await eventually(lambda: _backlog_is(services, 0))
    written = [e["recorded_at"] for e in await entries(client, key)]
    stored = [e.recorded_at.isoformat() for e in await services.reader.read_all(0, 10)]
    assert written == stored
    assert written[:2] == ["2026-01-02T03:04:05+00:00", "2026-01-02T03:04:05.000120+00:00"]


async def _backlog_is(services: Services, count: int) -> bool:
    return await backlog(services.pool) == count


async def test_old_event_versions_are_published_upcast(services: Services, broker) -> None:
    client, key = broker
    old = NewEvent(type="order.created.v1", data={"customer_id": "cus_1"}, metadata={"correlation_id": "c"})
    await services.appender.append(AppendRequest(writes=[StreamWrite("order-o1", [old])]))
    relay = make_relay(services, client, key)
    async with running(relay):
        await eventually(lambda: _backlog_is(services, 0))
    [published] = await entries(client, key)
    assert published["event_type"] == "order.created.v2"
    assert published["data"] == {"customer_id": "cus_1", "currency": "USD"}


async def test_each_entry_names_its_type_in_a_field_of_its_own(services: Services, broker) -> None:
    """Beside `event` (the contract's field, unchanged), `event_type` holds the type the JSON
    names, upcast: consumers skip what they do not handle without decoding the JSON."""
    client, key = broker
    old = NewEvent(type="order.created.v1", data={"customer_id": "cus_1"}, metadata={"correlation_id": "c"})
    await services.appender.append(AppendRequest(writes=[StreamWrite("order-o1", [old])]))
    await append_events(services.appender, 2)
    relay = make_relay(services, client, key)
    async with running(relay):
        await eventually(lambda: _backlog_is(services, 0))
    raw = await client.xrange(key)
    assert [sorted(fields) for _, fields in raw] == [[b"event", b"event_type"]] * 3
    assert [fields[b"event_type"] for _, fields in raw] == [b"order.created.v2", b"test.happened.v1", b"test.happened.v1"]
    assert [e["event_type"] for e in await entries(client, key)] == ["order.created.v2", "test.happened.v1", "test.happened.v1"]


async def test_every_event_has_its_outbox_row_and_a_refused_append_has_neither(services: Services) -> None:
    await append_events(services.appender, 5, streams=1)
    stale = StreamWrite("thing-0", [NewEvent("test.happened.v1", {}, {})], expected_version=1)
    with pytest.raises(ConcurrencyConflict):
        await services.appender.append(AppendRequest(writes=[stale]))
    counts = await services.pool.fetchrow(
        "SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM outbox) AS outbox,"
        " (SELECT count(*) FROM outbox o JOIN events e USING (position)) AS joined"
    )
    assert tuple(counts) == (5, 5, 5)


async def test_two_relays_publish_everything_once_in_order(services: Services, broker) -> None:
    client, key = broker
    first, second = make_relay(services, client, key, batch_size=50), make_relay(services, client, key, batch_size=50)
    async with running(first), running(second):
        await asyncio.gather(*(append_events(services.appender, 100, streams=3) for _ in range(4)))
        await eventually(lambda: _backlog_is(services, 0))
    positions = [int(e["position"]) for e in await entries(client, key)]
    assert positions == list(range(1, 401))
    assert first.published + second.published == 400


async def test_a_standby_relay_takes_over_when_the_leader_dies(services: Services, broker) -> None:
    client, key = broker
    leader, standby = make_relay(services, client, key), make_relay(services, client, key)
    stop_leader = asyncio.Event()
    leader_task = asyncio.create_task(leader.run(stop_leader))
    await eventually(lambda: _true(leader.is_leader))
    async with running(standby):
        await append_events(services.appender, 10)
        await eventually(lambda: _backlog_is(services, 0))
        assert standby.published == 0
        leader_task.cancel()  # killed: its connection (and lease) goes away
        with contextlib.suppress(asyncio.CancelledError):
            await leader_task
        await append_events(services.appender, 10)
        await eventually(lambda: _backlog_is(services, 0))
        assert standby.published == 10
    assert [int(e["position"]) for e in await entries(client, key)] == list(range(1, 21))


async def _true(value: bool) -> bool:
    return value


class _DiesAfterPublishing(OutboxRelay):
    """Stops forever between publishing a batch and marking it (then the test kills it)."""

    hung = False

    async def _publish(self, payloads: list[bytes], through: int) -> bool:
        published = await super()._publish(payloads, through)
        if payloads:
            self.hung = True
            await asyncio.Event().wait()
        return published


async def test_relay_killed_between_publishing_and_marking_publishes_again(services: Services, broker) -> None:
    client, key = broker
    await append_events(services.appender, 25)
    doomed = _DiesAfterPublishing(services.dsn, client, build_upcasters(), stream_key=key, batch_size=10)
    stop = asyncio.Event()
    task = asyncio.create_task(doomed.run(stop))
    await eventually(lambda: _true(doomed.hung))
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await backlog(services.pool) == 25  # the batch went out but was not marked
    async with running(make_relay(services, client, key)):
        await eventually(lambda: _backlog_is(services, 0))
    positions = [int(e["position"]) for e in await entries(client, key)]
    # at least once: the first batch twice, then everything in order
    assert positions == list(range(1, 11)) + list(range(1, 26))


async def test_redis_down_commands_succeed_and_the_outbox_drains_when_it_returns(
    services: Services, tmp_path: Path
) -> None:
    server = RedisProcess(tmp_path)
    server.start()
    client = redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=1)
    key = private_stream_key()
    try:
        relay = make_relay(services, client, key, batch_size=20)
        async with running(relay):
            await append_events(services.appender, 30)
            await eventually(lambda: _backlog_is(services, 0))
            server.stop()
            await append_events(services.appender, 40)  # appends never wait for the broker
            await asyncio.sleep(0.5)
            assert await backlog(services.pool) == 40
            server.start()
            await eventually(lambda: _backlog_is(services, 0), within=30)
        positions = [int(e["position"]) for e in await entries(client, key)]
        assert positions == list(range(1, 71))
    finally:
        await client.aclose()
        server.stop()


async def test_published_rows_and_processed_records_are_deleted_after_the_retention(services: Services, broker) -> None:
    client, key = broker
    await append_events(services.appender, 10)
    relay = make_relay(services, client, key)
    async with running(relay):
        await eventually(lambda: _backlog_is(services, 0))
    await append_events(services.appender, 3)  # unpublished: never purged
    await services.pool.execute(  # the batch that published 1 to 4 went out 8 days ago
        "INSERT INTO outbox_published (through, published_at) VALUES (4, now() - interval '8 days')"
    )
    # Consumers' processed-message records age the same way: old ones go, recent ones stay.
    await services.pool.execute(
        "INSERT INTO processed_messages (consumer, message_id, processed_at)"
        " SELECT 'payments', 'old-' || n, now() - interval '8 days' FROM generate_series(1, 3) n"
        " UNION ALL SELECT 'payments', 'recent-' || n, now() - interval '6 days' FROM generate_series(1, 2) n"
    )
    conn = await asyncpg.connect(services.dsn)
    try:
        await make_relay(services, client, key).apply_retention(conn)  # retention: 7 days
        assert await purge_published(conn, 7 * 24 * 3600.0) == 0  # nothing left past it
    finally:
        await conn.close()
    rows = await services.pool.fetch("SELECT position FROM outbox ORDER BY 1")
    assert [r[0] for r in rows] == list(range(5, 14))
    assert await published_positions(services) == list(range(5, 11))  # 11 to 13 still to publish
    assert [r[0] for r in await services.pool.fetch("SELECT through FROM outbox_published")] == [10]
    assert await services.pool.fetchval("SELECT count(*) FROM events") == 13
    kept = await services.pool.fetch("SELECT message_id FROM processed_messages ORDER BY 1")
    assert [r[0] for r in kept] == ["recent-1", "recent-2"]


async def test_woken_by_the_process_listener_when_given_one(services: Services, broker) -> None:
    """In `serve` the relay listens through the process's one LISTEN connection: a commit
    wakes it without its own listener (the poll here is far too slow to pass otherwise)."""
    client, key = broker
    notices = Notices(services.dsn, [NOTIFY_CHANNEL])
    relay = OutboxRelay(services.dsn, client, build_upcasters(), stream_key=key, poll_interval=60, notices=notices)
    try:
        async with running(relay):
            await eventually(lambda: _leading(relay))
            await asyncio.sleep(0.3)  # its first (empty) batch is behind it: now it waits
            await append_events(services.appender, 3)
            await eventually(lambda: _backlog_is(services, 0), within=5)
    finally:
        await notices.close()
    assert [e["position"] for e in await entries(client, key)] == ["1", "2", "3"]


async def _leading(relay: OutboxRelay) -> bool:
    return relay.is_leader


async def test_a_batch_read_touches_only_the_rows_after_the_mark(services: Services) -> None:
    """Read far into a long outbox, the relay's statement visits the batch's rows and no
    earlier event, whatever plan PostgreSQL keeps for it (a generic plan once merge-joined
    the outbox from the mark with the whole log from its start)."""
    from eventstore.outbox import _UNPUBLISHED, mark_published

    await append_events(services.appender, 300)
    conn = await asyncpg.connect(services.dsn)
    try:
        await mark_published(conn, 290)
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        [plan] = orjson.loads(await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + _UNPUBLISHED, 100, 290))
    finally:
        await conn.close()

    def visited(node: dict[str, Any]) -> list[tuple[str, int]]:
        own = [(node["Relation Name"], node["Actual Rows"])] if "Relation Name" in node else []
        return own + [v for child in node.get("Plans", []) for v in visited(child)]

    scans = visited(plan["Plan"])
    assert {name for name, _ in scans} == {"outbox", "events"}
    assert all(rows <= 10 for _, rows in scans), scans
