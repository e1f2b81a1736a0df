"""Subscriptions over graphql-transport-ws against the app served by uvicorn: delivery,
resume, auth, protocol hardening and visibility."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect

from service.container import Services
from service.settings import Settings
from tests.conftest import Api
from tests.subscription_support import (
    EVENTS,
    GraphQLWS,
    add_item,
    create_order,
    gql_ok,
    subscribed,
)


@pytest.fixture
def settings() -> Settings:
    return Settings(
        jwt_secret="test-secret-0123456789abcdef0123456789abcdef",
        run_projections=False,
        run_relay=False,
        ws_init_timeout=0.5,
        ws_ping_interval=0.3,
        ws_max_subscriptions=3,
        subscription_buffer=20,  # small, so slow clients overflow quickly
    )


async def log_positions(services: Services, after: int = 0) -> list[int]:
    rows = await services.pool.fetch("SELECT position FROM events WHERE position > $1 ORDER BY position", after)
    return [r["position"] for r in rows]


async def test_catch_up_then_live_then_complete(api: Api) -> None:
    order_id = await create_order(api)
    async with GraphQLWS.connect(api.port) as ws:
        assert (await ws.init(api.token("staff_1", "staff")))["type"] == "connection_ack"
        await ws.subscribe("1", EVENTS)
        (first,) = await ws.data("1", 1)  # from the table
        assert first["events"]["streamId"] == f"order-{order_id}"
        await add_item(api, order_id)
        (live,) = await ws.data("1", 1)
        assert live["events"]["version"] == 2
        assert int(live["events"]["position"]) > int(first["events"]["position"])
        await ws.send({"id": "1", "type": "complete"})
        await ws.send({"type": "ping"})
        assert (await ws.receive(None))["type"] == "pong"
        await add_item(api, order_id)  # completed: nothing more arrives for it
        await ws.subscribe("2", EVENTS, {"after": live["events"]["position"]})
        (next_one,) = await ws.data("2", 1)
        assert next_one["events"]["version"] == 3
        assert not ws._inbox["1"]


async def test_eight_concurrent_writers_every_event_once_in_order(api: Api, services: Services) -> None:
    orders = [await create_order(api, f"cus_{i}") for i in range(8)]
    start = await services.reader.head_position()
    per_writer = 30

    async def writer(i: int) -> None:
        for n in range(per_writer):
            await add_item(api, orders[i], f"SKU{n % 4}", customer=f"cus_{i}")

    async with subscribed(api, "all", EVENTS, {"after": str(start)}, token=api.token("staff_1", "staff")) as ws:
        writers = asyncio.gather(*(writer(i) for i in range(8)))
        got = await ws.data("all", 8 * per_writer)
        await writers
    positions = [int(d["events"]["position"]) for d in got]
    assert positions == await log_positions(services, start)


async def test_disconnect_write_more_resume_gets_exactly_the_missed_events(
    api: Api, services: Services
) -> None:
    order_id = await create_order(api)
    async with subscribed(api, "1", EVENTS) as ws:
        await add_item(api, order_id)
        seen = await ws.data("1", 2)
    last = seen[-1]["events"]["position"]
    for sku in ("A", "B", "C"):
        await add_item(api, order_id, sku)  # while disconnected
    async with subscribed(api, "1", EVENTS, {"after": last}) as ws:
        missed = await ws.data("1", 3)
        await add_item(api, order_id, "D")
        (live,) = await ws.data("1", 1)
    assert [d["events"]["version"] for d in missed + [live]] == [3, 4, 5, 6]
    positions = [int(d["events"]["position"]) for d in missed + [live]]
    assert positions == await log_positions(services, int(last))


async def test_customers_see_only_their_own_streams(api: Api) -> None:
    mine, theirs = await create_order(api, "cus_a"), await create_order(api, "cus_b")
    async with subscribed(api, "mine", EVENTS, token=api.token("cus_a", "customer")) as ws:
        await ws.subscribe("theirs", EVENTS, {"stream": f"order-{theirs}"})
        refused = await ws.receive("theirs")
        assert refused["type"] == "next"
        assert refused["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert (await ws.receive("theirs"))["type"] == "complete"
        await add_item(api, theirs, customer="cus_b")
        await add_item(api, mine, customer="cus_a")
        got = await ws.data("mine", 2)
    assert [(d["events"]["streamId"], d["events"]["version"]) for d in got] == [
        (f"order-{mine}", 1),
        (f"order-{mine}", 2),
    ]


@pytest.mark.parametrize(
    "payload",
    [{}, {"authorization": "Bearer not-a-jwt"}, {"authorization": "Basic abc"}, None],
    ids=["missing", "bad", "wrong-scheme", "null"],
)
async def test_connection_init_without_a_valid_token_closes_4403(api: Api, payload: object) -> None:
    async with GraphQLWS.connect(api.port) as ws:
        await ws.send({"type": "connection_init", "payload": payload})
        closed = await ws.closed()
    assert closed.code == 4403


async def test_a_token_signed_with_another_secret_closes_4403(api: Api) -> None:
    from api.auth import mint_token

    async with GraphQLWS.connect(api.port) as ws:
        token = mint_token("another-secret-of-enough-length-32b", "staff_1", "staff")
        await ws.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        assert (await ws.closed()).code == 4403


async def test_no_connection_init_in_time_closes_4408(api: Api) -> None:
    async with GraphQLWS.connect(api.port) as ws:
        assert (await ws.closed()).code == 4408


async def test_subscribe_before_connection_init_closes_4401(api: Api) -> None:
    async with GraphQLWS.connect(api.port) as ws:
        await ws.subscribe("1", EVENTS)
        assert (await ws.closed()).code == 4401


async def test_a_bad_document_fails_its_own_operation_and_the_others_live_on(api: Api) -> None:
    order_id = await create_order(api)
    async with subscribed(api, "good", EVENTS) as ws:
        await ws.data("good", 1)
        await ws.subscribe("syntax", "subscription { events { position ")
        await ws.subscribe("invalid", "subscription { events { noSuchField } }")
        for bad in ("syntax", "invalid"):
            error = await ws.receive(bad)
            assert error["type"] == "error", error
            assert error["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        await add_item(api, order_id)
        (live,) = await ws.data("good", 1)
        assert live["events"]["version"] == 2


async def test_server_pings_an_idle_socket(api: Api) -> None:
    async with subscribed(api, "quiet", EVENTS, {"stream": "order-nothing-here"}) as ws:
        message = await ws._read()  # nothing else is due on this socket
        assert message == {"type": "ping"}


async def test_operations_per_connection_are_capped(api: Api) -> None:
    order_id = await create_order(api)
    async with GraphQLWS.connect(api.port) as ws:
        await ws.init(api.token())
        for i in range(3):
            await ws.subscribe(str(i), EVENTS)
        await ws.subscribe("one-too-many", EVENTS)
        refused = await ws.receive("one-too-many")
        assert refused["type"] == "error"
        assert refused["payload"][0]["extensions"]["code"] == "RATE_LIMITED"
        await add_item(api, order_id)
        for i in range(3):
            assert [d["events"]["version"] for d in await ws.data(str(i), 2)] == [1, 2]
        await ws.send({"id": "0", "type": "complete"})
        await ws.subscribe("room-again", EVENTS)
        assert [d["events"]["version"] for d in await ws.data("room-again", 2)] == [1, 2]


@pytest.mark.parametrize("after", ["-3", "x", "2"], ids=["negative", "not-a-number", "past-the-head"])
async def test_a_bad_after_is_bad_user_input(api: Api, after: str) -> None:
    order_id = await create_order(api)  # the head is at 1
    async with subscribed(api, "1", EVENTS, {"after": after}) as ws:
        message = await ws.receive("1")
        assert message["payload"]["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        await ws.subscribe("2", EVENTS, {"after": "1"})  # the head itself is fine
        await add_item(api, order_id)
        (first,) = await ws.data("2", 1)
        assert first["events"]["position"] == "2"


ORDER_FIELDS = "id version status lines { sku quantity lineTotal { amount } } total { amount currency }"
ORDER_CHANGED = f"subscription($id: ID!) {{ orderChanged(id: $id) {{ {ORDER_FIELDS} }} }}"
ORDER = f"query($id: ID!, $p: String) {{ order(id: $id, consistentWith: $p) {{ {ORDER_FIELDS} }} }}"


async def test_order_changed_sends_the_read_model_after_each_applied_change(
    api: Api, projections: None
) -> None:
    order_id = await create_order(api)
    async with subscribed(api, "o", ORDER_CHANGED, {"id": order_id}) as ws:
        (now,) = await ws.data("o", 1)
        assert now["orderChanged"]["version"] == 1
        for sku in ("A", "B", "A"):
            position = await add_item(api, order_id, sku)
            (changed,) = await ws.data("o", 1)
            queried = await gql_ok(api, ORDER, {"id": order_id, "p": str(position)})
            assert changed["orderChanged"] == queried["order"]
        assert changed["orderChanged"]["version"] == 4
        assert changed["orderChanged"]["lines"] == [
            {"sku": "A", "quantity": 2, "lineTotal": {"amount": "5.00"}},
            {"sku": "B", "quantity": 1, "lineTotal": {"amount": "2.50"}},
        ]


@pytest.mark.parametrize(
    ("order", "code"),
    [("theirs", "NOT_FOUND"), ("ord_missing", "NOT_FOUND"), ("bad id!", "BAD_USER_INPUT")],
)
async def test_order_changed_refuses_what_the_caller_may_not_see(
    api: Api, order: str, code: str
) -> None:
    theirs = await create_order(api, "cus_b")
    async with subscribed(api, "o", ORDER_CHANGED, {"id": theirs if order == "theirs" else order}, token=api.token("cus_a", "customer")) as ws:
        message = await ws.receive("o")
        assert message["payload"]["data"] is None
        assert message["payload"]["errors"][0]["extensions"]["code"] == code
        assert (await ws.receive("o"))["type"] == "complete"


async def test_the_socket_closes_4403_when_its_token_expires(api: Api) -> None:
    from api.auth import mint_token

    token = mint_token(api.secret, "cus_1", "customer", ttl=2)  # exp is whole seconds: at least 1 s left for init
    async with GraphQLWS.connect(api.port) as ws:
        assert (await ws.init(token))["type"] == "connection_ack"
        await ws.subscribe("1", EVENTS)
        closed = await ws.closed()
    assert (closed.code, closed.reason) == (4403, "Forbidden: the token has expired")


async def test_pages_on_other_origins_may_subscribe(api: Api) -> None:
    # the token in connection_init is the only credential, so no origin is refused
    async with connect(
        f"ws://127.0.0.1:{api.port}/graphql",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        origin="https://frontend.example",  # type: ignore[arg-type]
    ) as raw:
        ws = GraphQLWS(raw)
        assert (await ws.init(api.token()))["type"] == "connection_ack"


async def test_a_client_that_stops_reading_blocks_nobody_and_later_gets_everything(
    api: Api, services: Services
) -> None:
    import base64
    import os
    import socket

    from eventstore import AppendRequest, NewEvent, StreamWrite

    def noise() -> str:
        return base64.b64encode(os.urandom(12_000)).decode()

    start = await services.reader.head_position()
    tiny = socket.socket()
    tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a few messages
    tiny.connect(("127.0.0.1", api.port))
    with_data = "subscription($after: String) { events(after: $after) { position data } }"
    async with connect(
        f"ws://127.0.0.1:{api.port}/graphql",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        sock=tiny,
        max_queue=1,
    ) as raw, GraphQLWS.connect(api.port) as fast:
        slow = GraphQLWS(raw)
        for ws in (slow, fast):
            await ws.init(api.token("staff_1", "staff"))
            await ws.subscribe("all", with_data, {"after": str(start)})
        meta = {"correlation_id": "c", "service": "test"}
        # 600 events, ~10 MB that do not compress (more than the kernel's socket buffers hold),
        # while the slow one reads nothing
        for i in range(60):
            events = [NewEvent("test.tick.v1", {"i": i, "pad": noise()}, meta) for _ in range(10)]
            await services.appender.append(AppendRequest([StreamWrite(f"tick-{i}", events)]))
        got_fast = await fast.data("all", 600)  # not held back by the slow one
        taps = services.live.hub._taps
        assert any(tap.dropped for tap in taps)  # the slow one's queue filled and refused batches
        assert all(tap._held <= 20 for tap in taps)  # and stayed bounded while it did not read
        got_slow = await slow.data("all", 600)  # now it reads: the gap comes from the table
    expected = [str(p) for p in await log_positions(services, start)]
    assert [d["events"]["position"] for d in got_fast] == expected
    assert [d["events"]["position"] for d in got_slow] == expected
