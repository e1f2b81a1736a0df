"""Catch-up then live, at the service level: gap-free under concurrent writers, resumable,
surviving a killed LISTEN connection, with slow subscribers that block nobody."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator

import asyncpg
import pytest

from domain.commands import AddItem, CreateOrder
from eventstore import RecordedEvent, StoreUnavailable
from eventstore.listener import DATABASE_DOWN, EventFilter, EventHub
from eventstore.subscription import subscribe
from service.container import Services
from service.context import Principal, RequestContext, Role
from service.errors import NotFound
from service.settings import Settings

STAFF = RequestContext.new(Principal("staff_1", Role.STAFF))
TIMEOUT = 30.0  # a failure shows as a hang; this turns it into an error


async def take(events: AsyncIterator[RecordedEvent], count: int) -> list[RecordedEvent]:
    async def run() -> list[RecordedEvent]:
        out: list[RecordedEvent] = []
        async for event in events:
            out.append(event)
            if len(out) == count:
                break
        return out

    return await asyncio.wait_for(run(), TIMEOUT)


async def all_positions(services: Services) -> list[int]:
    return [r["position"] for r in await services.pool.fetch("SELECT position FROM events ORDER BY position")]


async def new_order(services: Services, customer: str = "cus_1") -> str:
    result = await services.execute(STAFF, CreateOrder(customer_id=customer))
    return result.aggregate.id


async def add_items(services: Services, order_id: str, count: int) -> None:
    for i in range(count):
        await services.execute(
            STAFF, AddItem(order_id=order_id, sku=f"SKU{i % 5}", quantity=1, unit_price="1.00")
        )


async def test_tailing_subscriber_sees_every_event_of_concurrent_writers_once_in_order(
    services: Services,
) -> None:
    orders = [await new_order(services) for _ in range(8)]
    before = await services.reader.head_position()
    collected: list[RecordedEvent] = []
    got_all = asyncio.Event()
    expected_total = 8 * 60

    async def tail() -> None:
        async for event in subscribe(services.live.hub, before):
            collected.append(event)
            if len(collected) == expected_total:
                got_all.set()

    tailing = asyncio.create_task(tail())
    try:
        # 8 writers, 60 mutations each, interleaving with the tail's catch-up and live reads
        await asyncio.gather(*(add_items(services, order_id, 60) for order_id in orders))
        await asyncio.wait_for(got_all.wait(), TIMEOUT)
    finally:
        tailing.cancel()
    log = [p for p in await all_positions(services) if p > before]
    assert [e.position for e in collected] == log
    assert len(log) == expected_total


async def test_resuming_from_the_last_position_seen_gives_exactly_the_missed_events(
    services: Services,
) -> None:
    order_id = await new_order(services)
    await add_items(services, order_id, 5)
    first = await take(subscribe(services.live.hub, 0), 6)
    assert [e.version for e in first] == [1, 2, 3, 4, 5, 6]
    last_seen = first[3].position  # the client saw four, then dropped
    await add_items(services, order_id, 7)  # written while it was away
    resumed = await take(subscribe(services.live.hub, last_seen), 9)
    assert [e.version for e in resumed] == list(range(5, 14))
    assert [e.position for e in resumed] == [p for p in await all_positions(services) if p > last_seen]


async def test_filters_by_type_and_stream_and_the_live_part_too(services: Services) -> None:
    mine, other = await new_order(services), await new_order(services)
    stream = f"order-{mine}"
    by_stream = subscribe(services.live.hub, 0, stream_id=stream)
    by_type = subscribe(services.live.hub, 0, types=["order.created.v2"])
    first = await take(by_stream, 1)  # catch-up
    assert [e.stream_id for e in first] == [stream]
    await add_items(services, other, 2)
    await add_items(services, mine, 2)
    live = await take(by_stream, 2)
    assert [(e.stream_id, e.version) for e in live] == [(stream, 2), (stream, 3)]
    await new_order(services)
    created = await take(by_type, 3)
    assert {e.type for e in created} == {"order.created.v2"}
    assert len({e.stream_id for e in created}) == 3


async def test_empty_types_list_matches_nothing(services: Services) -> None:
    nothing = subscribe(services.live.hub, 0, types=[])
    everything = subscribe(services.live.hub, 0)
    await new_order(services)
    assert len(await take(everything, 1)) == 1
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(aiter(nothing)), 0.5)


async def test_customers_get_only_their_own_streams(services: Services) -> None:
    mine, theirs = await new_order(services, "cus_a"), await new_order(services, "cus_b")
    customer = Principal("cus_a", Role.CUSTOMER)
    events = services.live.events(customer, None, None, None)
    await add_items(services, theirs, 3)
    await add_items(services, mine, 2)
    seen = await take(events, 3)
    assert [(e.stream_id, e.version) for e in seen] == [(f"order-{mine}", v) for v in (1, 2, 3)]
    with pytest.raises(NotFound):
        await anext(aiter(services.live.events(customer, None, None, f"order-{theirs}")))
    staff = services.live.events(Principal("staff_1", Role.STAFF), "0", None, f"order-{theirs}")
    assert len(await take(staff, 4)) == 4


async def listener_pids(conn: asyncpg.Connection) -> list[int]:
    return [
        r["pid"]
        for r in await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
    ]


async def test_killed_listener_connection_reconnects_and_nothing_is_lost(
    dsn: str, settings: Settings
) -> None:
    # No polling to fall back on: live delivery after the kill proves the reconnect.
    services = await Services.start(
        Settings(**{**settings.__dict__, "subscription_poll_interval": 3600.0}), dsn
    )
    admin = await asyncpg.connect(dsn)
    try:
        order_id = await new_order(services)
        events = aiter(subscribe(services.live.hub, 0))
        assert len(await take(events, 1)) == 1
        for _ in range(100):  # the LISTEN connection comes up in the background
            if await listener_pids(admin):
                break
            await asyncio.sleep(0.05)
        (listener,) = await listener_pids(admin)
        await add_items(services, order_id, 3)
        assert len(await take(events, 3)) == 3
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", listener)
        await add_items(services, order_id, 4)  # committed while the listener is down
        after_kill = await take(events, 4)
        await add_items(services, order_id, 2)  # and after it is back
        after_back = await take(events, 2)
        assert [e.version for e in after_kill + after_back] == list(range(5, 11))
        reconnected = await listener_pids(admin)
        assert reconnected and listener not in reconnected
    finally:
        await admin.close()
        await services.close()


async def test_polling_finds_commits_when_no_notice_ever_comes(services: Services) -> None:
    silent = asyncio.Event()  # never set: the LISTEN connection is deaf
    hub = EventHub(services.reader, lambda: silent, poll_interval=0.05)
    try:
        order_id = await new_order(services)
        events = aiter(subscribe(hub, 0))
        assert len(await take(events, 1)) == 1
        await add_items(services, order_id, 3)
        assert [e.version for e in await take(events, 3)] == [2, 3, 4]
    finally:
        await hub.close()


async def test_a_slow_subscriber_blocks_nobody_holds_a_bounded_queue_and_loses_nothing(
    services: Services,
) -> None:
    hub = EventHub(
        services.reader,
        lambda: services.read_models.notices.next("eventgraph_events"),
        poll_interval=0.05,
        buffer=10,
    )
    try:
        order_id = await new_order(services)
        slow = subscribe(hub, 0)
        slow_events = aiter(slow)
        assert len(await take(slow_events, 1)) == 1  # live, then stops reading
        fast = aiter(subscribe(hub, await services.reader.head_position()))
        fast_seen: list[RecordedEvent] = []
        fast_has_all = asyncio.Event()

        async def follow() -> None:
            async for event in fast:
                fast_seen.append(event)
                if len(fast_seen) == 100:
                    fast_has_all.set()

        following = asyncio.create_task(follow())
        for _ in range(20):
            await add_items(services, order_id, 5)  # one commit each: many small batches
        await asyncio.wait_for(fast_has_all.wait(), TIMEOUT)
        assert [e.version for e in fast_seen] == list(range(2, 102))
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        (slow_tap,) = hub._taps  # the fast one's tap closed with it
        assert slow_tap.dropped > 0  # its queue filled and refused batches
        assert slow_tap._held <= 10
        reads_before = slow.table_reads
        rest = await take(slow_events, 100)
        assert [e.version for e in rest] == list(range(2, 102))
        assert slow.table_reads > reads_before  # it filled the gap from the table
    finally:
        await hub.close()


async def test_every_database_connection_killed_mid_stream_loses_nothing(services: Services) -> None:
    """What a database restart does to a process: pool and LISTEN connections all cut."""
    admin = await asyncpg.connect(services.dsn)
    try:
        order_id = await new_order(services)
        events = aiter(subscribe(services.live.hub, 0))
        assert len(await take(events, 1)) == 1
        await add_items(services, order_id, 2)
        assert len(await take(events, 2)) == 2
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert killed >= 2  # the pool's and the LISTEN connection at least
        written = attempts = 0
        while written < 5:  # a write on a cut connection fails; the caller retries
            attempts += 1
            assert attempts < 50
            try:
                await add_items(services, order_id, 1)
                written += 1
            except (StoreUnavailable, *DATABASE_DOWN):
                pass
        assert [e.version for e in await take(events, 5)] == [4, 5, 6, 7, 8]
    finally:
        await admin.close()


async def test_closing_the_hub_as_a_notice_arrives_ends_its_task(services: Services) -> None:
    """The teardown hang: on Python 3.11 `asyncio.wait_for` returns the inner result and drops
    the cancellation when both land in the same loop turn; the hub then waited for a
    subscriber forever and `close()` waited for the hub."""
    for _ in range(3):
        wakeup = asyncio.Event()
        hub = EventHub(services.reader, functools.partial(lambda e: e, wakeup), poll_interval=3600.0)
        tap = hub.open(EventFilter())
        await asyncio.wait_for(tap.ready.wait(), TIMEOUT)  # it read the head
        await asyncio.sleep(0.1)  # and the (empty) log after it: now it waits for a notice
        hub.close_tap(tap)
        wakeup.set()  # the notice and the close in the same turn of the loop
        await asyncio.wait_for(hub.close(), TIMEOUT)
