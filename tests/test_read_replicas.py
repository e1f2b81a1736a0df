"""Read replicas (CONTRACT 7.9) against a real streaming replica this module starts itself.

The module's cluster (tests/replica_support.py) is private: these tests run the same
whether DATABASE_URL is set or not.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import asyncpg
import pytest

from eventstore import replicas
from eventstore.replicas import replica_name
from service.container import Services
from service.context import Principal, Role
from service.database import migrate
from service.settings import Settings
from tests.conftest import Api, truncate_all
from tests.relay_support import eventually
from tests.replica_support import Cluster, start_cluster
from tests.subscription_support import GraphQLWS, add_item, create_order, gql_ok

MAX_LAG = 1.0  # seconds: short, so that a paused replica is left out soon
WAIT = 30.0  # seconds any awaited condition may take before the test fails

ORDER = "query($id: ID!, $at: String) { order(id: $id, consistentWith: $at) { id version lines { sku } } }"
ORDERS = "query { orders(first: 20) { edges { node { id version } } } }"
STREAM = "query($s: String!) { stream(streamId: $s) { version type } }"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = start_cluster()
    try:
        migrate(cluster.primary_url)
        cluster.wait_replayed()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def dsn(cluster: Cluster) -> str:
    await truncate_all(cluster.primary_url)
    return cluster.primary_url


@pytest.fixture
def settings(settings: Settings, cluster: Cluster) -> Settings:
    return replace(settings, read_urls=(cluster.standby_url,), replica_max_lag=MAX_LAG)


@pytest.fixture
async def standby(cluster: Cluster) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the replica; replay runs again when the test ends."""
    conn = await _connect_standby(cluster)
    yield conn
    await conn.execute("SELECT pg_wal_replay_resume()")
    await conn.close()


async def _connect_standby(cluster: Cluster) -> asyncpg.Connection:
    async with asyncio.timeout(WAIT):
        while True:
            try:
                return await asyncpg.connect(cluster.standby_url)
            except (OSError, asyncpg.CannotConnectNowError):
                await asyncio.sleep(0.1)


async def _replica_lag(api: Api, cluster: Cluster) -> float:
    text = (await api.http.get("/metrics")).text
    label = re.escape(replica_name(cluster.standby_url))
    found = re.search(rf'^eventgraph_replica_lag_seconds{{replica="{label}"}} (\S+)$', text, re.M)
    assert found, "the replica's lag gauge is missing"
    return float(found.group(1))


async def _in_use(api: Api, cluster: Cluster) -> None:
    """Waits until the replica is within the lag bound (a loaded machine may hold replay up)."""

    async def within_bound() -> bool:
        return await _replica_lag(api, cluster) <= MAX_LAG

    await eventually(within_bound, WAIT)


async def _replica_has_order(standby: asyncpg.Connection, order_id: str) -> int | None:
    return await standby.fetchval("SELECT version FROM order_views WHERE id = $1", order_id)  # type: ignore[no-any-return]


async def _replica_served(standby: asyncpg.Connection, text: str) -> bool:
    """Some backend on the replica (other than ours) last ran a statement containing `text`."""
    return bool(
        await standby.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE $1",
            f"%{text}%",
        )
    )


async def _caught_up(standby: asyncpg.Connection, order_id: str, version: int) -> None:
    async def there() -> bool:
        return (await _replica_has_order(standby, order_id) or 0) >= version

    await eventually(there, WAIT)


async def test_reads_land_on_the_replica(
    api: Api, services: Services, projections: None, standby: asyncpg.Connection, cluster: Cluster
) -> None:
    order_id = await create_order(api)
    position = await add_item(api, order_id)
    await _caught_up(standby, order_id, 2)
    await _in_use(api, cluster)
    await standby.execute("SELECT pg_stat_reset()")

    data = await gql_ok(api, ORDER, {"id": order_id, "at": str(position)})
    assert data["order"] == {"id": order_id, "version": 2, "lines": [{"sku": "SKU1"}]}
    assert await _replica_served(standby, "FROM order_views o")  # the read model's statement
    assert [e["node"]["id"] for e in (await gql_ok(api, ORDERS))["orders"]["edges"]] == [order_id]
    assert await _replica_served(standby, "ORDER BY o.seq DESC")
    stream = (await gql_ok(api, STREAM, {"s": f"order-{order_id}"}))["stream"]
    assert [e["version"] for e in stream] == [1, 2]
    assert await _replica_served(standby, "WHERE stream_id = $1 AND version >= $2")

    async def counted() -> bool:  # the replica's statistics count the scans it answered
        await standby.execute("SELECT pg_stat_clear_snapshot()")
        scans = await standby.fetchval(
            "SELECT coalesce(idx_scan, 0) + coalesce(seq_scan, 0) FROM pg_stat_user_tables"
            " WHERE relname = 'order_views'"
        )
        return bool(scans)

    await eventually(counted, WAIT)

    wait = await services.read_models.consistent_with("orders", position, 5.0)
    assert wait.source is services.reads.replicas[0].pool  # it has applied the position
    assert 0 <= await _replica_lag(api, cluster) <= MAX_LAG


async def test_every_read_only_query_reads_the_replica(
    api: Api, services: Services, projections: None, standby: asyncpg.Connection, cluster: Cluster
) -> None:
    staff = ("ops", "staff")
    registered = await gql_ok(
        api, 'mutation { registerProduct(input: {sku: "MUG", name: "Mug", price: "9.99"}) { position } }', as_=staff
    )

    async def replicated() -> bool:
        return bool(await standby.fetchval("SELECT count(*) FROM product_views WHERE sku = 'MUG'"))

    await eventually(replicated, WAIT)
    await _in_use(api, cluster)
    product = await gql_ok(
        api, "query($at: String) { product(sku: \"MUG\", consistentWith: $at) { sku price { amount } } }",
        {"at": registered["registerProduct"]["position"]}, as_=staff,
    )
    assert product["product"] == {"sku": "MUG", "price": {"amount": "9.99"}}
    assert await _replica_served(standby, "FROM product_views")
    body = await api.gql(
        "mutation { createOrder(input: {customerId: \"cus_1\"}) { order { id } } }",
        headers={"X-Correlation-ID": "replica-flow"},
    )
    order_id = body["data"]["createOrder"]["order"]["id"]
    await _caught_up(standby, order_id, 1)
    await _in_use(api, cluster)
    trace = await gql_ok(api, 'query { trace(correlationId: "replica-flow") { streamId version } }')
    assert trace["trace"] == [{"streamId": f"order-{order_id}", "version": 1}]
    assert await _replica_served(standby, "metadata->>'correlation_id'")
    events = await gql_ok(api, "query { events(first: 10) { edges { node { streamId } } } }")
    assert [e["node"]["streamId"] for e in events["events"]["edges"]] == [f"order-{order_id}"]
    assert await _replica_served(standby, "FROM events WHERE position > $1")
    at = await gql_ok(api, "query($id: ID!) { orderAt(id: $id, version: 1) { id version } }", {"id": order_id})
    assert at["orderAt"] == {"id": order_id, "version": 1}
    assert (await api.http.get("/healthz")).status_code == 200


async def test_consistent_with_is_exact_while_replay_is_paused(
    api: Api, services: Services, projections: None, standby: asyncpg.Connection, cluster: Cluster
) -> None:
    order_id = await create_order(api)
    await _caught_up(standby, order_id, 1)
    await standby.execute("SELECT pg_wal_replay_pause()")

    for sku in ("A", "B", "C"):
        position = await add_item(api, order_id, sku)
        data = await gql_ok(api, ORDER, {"id": order_id, "at": str(position)})
        assert [line["sku"] for line in data["order"]["lines"]] == ["A", "B", "C"][: len(data["order"]["lines"])]
        assert data["order"]["lines"][-1]["sku"] == sku  # exactly this write, never older
    assert await _replica_has_order(standby, order_id) == 1  # the replica never had them

    wait = await services.read_models.consistent_with("orders", position, 5.0)
    assert not wait.stale and wait.source is services.pool  # served by the primary

    await standby.execute("SELECT pg_wal_replay_resume()")
    await _caught_up(standby, order_id, 4)
    await _in_use(api, cluster)
    wait = await services.read_models.consistent_with("orders", position, 5.0)
    assert wait.source is services.reads.replicas[0].pool  # back on the replica once it has it


async def test_a_lagging_replica_gets_no_reads(
    api: Api, services: Services, projections: None, standby: asyncpg.Connection, cluster: Cluster
) -> None:
    await standby.execute("SELECT pg_wal_replay_pause()")
    order_id = await create_order(api)

    async def left_out() -> bool:
        return await _replica_lag(api, cluster) > MAX_LAG

    await eventually(left_out, WAIT)
    # written more than the bound ago, absent from the replica, and visible without consistentWith
    assert await _replica_has_order(standby, order_id) is None
    data = await gql_ok(api, ORDER, {"id": order_id, "at": None})
    assert data["order"]["id"] == order_id
    edges = (await gql_ok(api, ORDERS))["orders"]["edges"]
    assert [e["node"]["id"] for e in edges] == [order_id]
    assert (await api.http.get("/healthz")).status_code == 200

    await standby.execute("SELECT pg_wal_replay_resume()")
    await _in_use(api, cluster)  # it takes reads again after catching up


async def test_stopping_the_replica_causes_no_error(
    api: Api, services: Services, projections: None, cluster: Cluster
) -> None:
    order_id = await create_order(api)
    position = await add_item(api, order_id)
    cluster.stop_standby()
    try:
        for _ in range(3):  # pooled connections to it die on use; every read falls back
            data = await gql_ok(api, ORDER, {"id": order_id, "at": str(position)})
            assert data["order"]["version"] == 2
            assert [e["node"]["id"] for e in (await gql_ok(api, ORDERS))["orders"]["edges"]] == [order_id]
            stream = (await gql_ok(api, STREAM, {"s": f"order-{order_id}"}))["stream"]
            assert [e["version"] for e in stream] == [1, 2]
        assert await _replica_lag(api, cluster) == math.inf
        assert (await api.http.get("/healthz")).status_code == 200
    finally:
        cluster.start_standby()
    await _in_use(api, cluster)  # the restarted replica takes reads again
    standby = await _connect_standby(cluster)
    try:
        await gql_ok(api, ORDER, {"id": order_id, "at": str(position)})
        assert await _replica_served(standby, "FROM order_views o")
    finally:
        await standby.close()


async def test_a_subscription_through_the_replica_survives_its_restart(
    api: Api, services: Services, cluster: Cluster
) -> None:
    order_id = await create_order(api)
    principal = Principal(sub="cus_1", role=Role.CUSTOMER)
    seen: list[tuple[int, int]] = []  # (position, version)
    subscription = services.live.events(principal, None, None, f"order-{order_id}")

    async def collect() -> None:
        async for event in subscription:
            seen.append((event.position, event.version))

    task = asyncio.create_task(collect())
    try:
        await eventually(lambda: _true(services.live.hub.subscribers == 1), WAIT)
        for _ in range(5):
            await add_item(api, order_id)
        cluster.stop_standby()
        for _ in range(5):
            await add_item(api, order_id)
        cluster.start_standby()
        for _ in range(5):
            await add_item(api, order_id)

        async def all_seen() -> bool:
            return len(seen) >= 16

        await eventually(all_seen, WAIT)
        await asyncio.sleep(0.2)  # room for a duplicate to show
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [version for _, version in seen] == list(range(1, 17))
    assert [p for p, _ in seen] == sorted({p for p, _ in seen})
    assert services.live.hub.reader.seen_head >= seen[-1][0]


async def _true(value: bool) -> bool:
    return value


def test_settings_read_the_replica_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_READ_URL", "postgresql://u:secret@r1:5433/db, postgresql://r2/db")
    monkeypatch.setenv("EVENTGRAPH_READ_POOL_SIZE", "4")
    monkeypatch.setenv("EVENTGRAPH_REPLICA_MAX_LAG", "0.5")
    settings = Settings.from_env()
    assert settings.read_urls == ("postgresql://u:secret@r1:5433/db", "postgresql://r2/db")
    assert (settings.read_pool_size, settings.replica_max_lag) == (4, 0.5)
    assert [replica_name(url) for url in settings.read_urls] == ["r1:5433", "r2:5432"]  # no credentials
    assert replace(settings, read_urls=()).read_urls == ()


@pytest.mark.parametrize("listener_lost", [False, True])
async def test_a_paused_replica_does_not_hold_a_subscription_back(
    api: Api, settings: Settings, dsn: str, standby: asyncpg.Connection, listener_lost: bool
) -> None:
    """The primary's notification says how far the log is: a replica behind it (here within
    a generous lag bound, and with no polling to fall back on) is not read for it; after
    the LISTEN connection was lost (notifications missed), the primary is read."""
    patient = replace(settings, replica_max_lag=600.0, subscription_poll_interval=600.0)
    services = await Services.start(patient, dsn)
    try:
        order_id = await create_order(api)
        principal = Principal(sub="cus_1", role=Role.CUSTOMER)
        seen: list[int] = []

        async def collect() -> None:
            async for event in services.live.events(principal, None, None, f"order-{order_id}"):
                seen.append(event.version)

        await _caught_up_stream(standby, order_id)
        task = asyncio.create_task(collect())
        try:
            await eventually(lambda: _true(len(seen) == 1), WAIT)
            await standby.execute("SELECT pg_wal_replay_pause()")
            if listener_lost:  # the writes below commit while nobody listens
                await services.pool.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'"
                )
            for _ in range(3):
                await add_item(api, order_id)
            await eventually(lambda: _true(len(seen) == 4), WAIT)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert seen == [1, 2, 3, 4]
        assert services.reads.replicas[0].lag <= patient.replica_max_lag  # it was never left out
    finally:
        await services.close()


async def _caught_up_stream(standby: asyncpg.Connection, order_id: str) -> None:
    async def there() -> bool:
        return bool(await standby.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", f"order-{order_id}"))

    await eventually(there, WAIT)


async def test_a_replica_that_stops_answering_is_left_out(
    api: Api, services: Services, projections: None, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica cut off (here: every process of it stopped with SIGSTOP) answers nothing, not
    even a reset: its reads give up after REPLICA_READ_TIMEOUT and go to the primary."""
    monkeypatch.setattr(replicas, "REPLICA_READ_TIMEOUT", 0.5)
    order_id = await create_order(api)
    position = await add_item(api, order_id)
    await _in_use(api, cluster)
    frozen = cluster.standby_processes()
    for process in frozen:
        process.suspend()
    try:
        data = await gql_ok(api, ORDER, {"id": order_id, "at": str(position)})
        assert data["order"]["version"] == 2
        assert await _replica_lag(api, cluster) == math.inf
        assert (await api.http.get("/healthz")).status_code == 200
    finally:
        for process in frozen:
            process.resume()
    await _in_use(api, cluster)


async def test_order_changed_is_exact_while_replay_is_paused(
    api: Api, projections: None, standby: asyncpg.Connection, cluster: Cluster
) -> None:
    order_id = await create_order(api)
    await _caught_up(standby, order_id, 1)
    await _in_use(api, cluster)
    async with GraphQLWS.connect(api.port) as ws:
        await ws.init(api.token())
        await ws.subscribe("o", "subscription($id: ID!) { orderChanged(id: $id) { version } }", {"id": order_id})
        assert await ws.data("o", 1) == [{"orderChanged": {"version": 1}}]
        await standby.execute("SELECT pg_wal_replay_pause()")
        for version in (2, 3):
            await add_item(api, order_id, f"S{version}")
            assert await ws.data("o", 1) == [{"orderChanged": {"version": version}}]
    assert await _replica_has_order(standby, order_id) == 1
