"""A Redis that restarts without the entries the relay published: the relay publishes again
what the consumer groups had not processed, and the saga finishes every order."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import redis.asyncio as redis

from domain.order import OrderStatus
from eventstore.outbox import backlog
from service.container import Services, build_upcasters
from service.relay import OutboxRelay, published_through_key
from tests.relay_support import RedisProcess, append_events, entries, eventually, private_stream_key
from tests.saga_support import consumers_for, deposit, place_order, running, settled, stock, wallet

ORDERS = 20
EVENTS_PER_ORDER = 3  # created, item added, submitted


async def _head(services: Services) -> int:
    return int(await services.pool.fetchval("SELECT coalesce(max(position), 0) FROM events"))


async def _drained_and_observed(services: Services, relay: OutboxRelay) -> bool:
    """Everything published, and the relay has seen the groups acknowledge all of it."""
    return await backlog(services.pool) == 0 and relay.needed_after == await _head(services)


async def _start(
    services: Services, server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> tuple[OutboxRelay, redis.Redis, str]:
    """`server` started, a relay for a private stream on it, a product and a wallet."""
    caplog.set_level(logging.WARNING, logger="service.relay")
    server.start()
    client = redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=1)
    key = private_stream_key()
    relay = OutboxRelay(
        services.dsn, client, build_upcasters(), stream_key=key, poll_interval=0.2, observe_interval=0.2
    )
    await stock(services, A=100)
    await deposit(services, "cus_1", "100.00")
    return relay, client, key


async def _published_but_not_consumed(services: Services, relay: OutboxRelay, client: redis.Redis, key: str) -> None:
    """ord_0 through the whole saga; then, the consumers stopped, ORDERS more orders published."""
    async with running(*consumers_for(services, client, key)):
        await place_order(services, "ord_0", {"A": (1, "1.00")})
        assert (await settled(services, "ord_0")).status is OrderStatus.COMPLETED
        await eventually(lambda: _drained_and_observed(services, relay))  # ord_0's last steps too
    for n in range(1, ORDERS + 1):
        await place_order(services, f"ord_{n}", {"A": (1, "1.00")})
    await eventually(lambda: _backlog_is(services, 0))


async def test_orders_published_before_redis_lost_its_data_all_complete(
    services: Services, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisProcess(tmp_path, persistent=False)
    relay, client, key = await _start(services, server, caplog)
    try:
        async with running(relay):
            await _published_but_not_consumed(services, relay, client, key)
            server.kill()
            server.start()  # empty: no append-only file, no snapshot
            restarted = time.monotonic()
            async with running(*consumers_for(services, client, key)):
                statuses = [(await settled(services, f"ord_{n}", within=60)).status for n in range(1, ORDERS + 1)]
                assert statuses == [OrderStatus.COMPLETED] * ORDERS  # 0 stranded
                print(f"\n{ORDERS} orders completed {time.monotonic() - restarted:.2f} s after Redis restarted empty")
                # A second wipe, consumers running: they recreate their groups, and a new order completes.
                server.kill()
                server.start()
                await place_order(services, "ord_last", {"A": (1, "1.00")})
                assert (await settled(services, "ord_last", within=60)).status is OrderStatus.COMPLETED
        # Exactly what the groups had not processed went out again, and nothing was charged twice.
        assert relay.republished >= ORDERS * EVENTS_PER_ORDER
        lost = [r for r in caplog.records if "lost entries" in r.getMessage()]
        assert lost and f"the {ORDERS * EVENTS_PER_ORDER} events" in lost[0].getMessage()
        assert str((await wallet(services, "cus_1")).balance) == f"{100 - ORDERS - 2}.00"
    finally:
        await client.aclose()
        server.stop()


async def test_a_redis_restarted_with_its_data_gets_nothing_again(
    services: Services, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisProcess(tmp_path, persistent=True)  # append-only file, fsync always
    relay, client, key = await _start(services, server, caplog)
    try:
        async with running(relay):
            await _published_but_not_consumed(services, relay, client, key)
            server.kill()
            server.start()
            async with running(*consumers_for(services, client, key)):
                statuses = [(await settled(services, f"ord_{n}", within=60)).status for n in range(1, ORDERS + 1)]
                await eventually(lambda: _drained_and_observed(services, relay))
        assert statuses == [OrderStatus.COMPLETED] * ORDERS
        assert relay.republished == 0
        assert not [r for r in caplog.records if "lost entries" in r.getMessage()]
        positions = [int(e["position"]) for e in await entries(client, key)]
        assert positions == list(range(1, await _head(services) + 1))  # each once, in order
    finally:
        await client.aclose()
        server.stop()


async def test_a_stream_published_before_the_marker_existed_is_taken_as_it_is(services: Services, broker) -> None:
    client, key = broker
    first = OutboxRelay(services.dsn, client, build_upcasters(), stream_key=key, poll_interval=0.2)
    async with running(first):
        await append_events(services.appender, 10)
        await eventually(lambda: _backlog_is(services, 0))
    await client.delete(published_through_key(key))  # as a relay of the previous version left it
    upgraded = OutboxRelay(services.dsn, client, build_upcasters(), stream_key=key, poll_interval=0.2)
    async with running(upgraded):
        await append_events(services.appender, 5)
        await eventually(lambda: _backlog_is(services, 0))
    assert upgraded.republished == 0
    assert [int(e["position"]) for e in await entries(client, key)] == list(range(1, 16))


async def _backlog_is(services: Services, count: int) -> bool:
    return await backlog(services.pool) == count
