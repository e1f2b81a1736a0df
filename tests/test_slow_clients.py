"""Slow clients against the server `eventgraph serve` runs (service/server.py), over raw
sockets: a request must arrive whole within the read timeout, idle keep-alive connections
close, and a normal client or a WebSocket never notices."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from api.app import create_app
from api.auth import mint_token
from domain.commands import CreateOrder
from service.container import Services
from service.context import Principal, RequestContext, Role
from service.server import ServerConfig
from service.serving import in_process
from service.settings import Settings
from tests.subscription_support import EVENTS, GraphQLWS

READ_TIMEOUT = 2.0
KEEP_ALIVE = 2.0
STAFF = RequestContext.new(Principal("staff_1", Role.STAFF))
HANG_BOUND = 30.0  # a hang check: each wait for the server is bounded by this
BODY = b'{"query":"{ __typename }"}'
REQUEST = (
    b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
    + BODY
)


@pytest.fixture
async def port(services: Services, settings: Settings) -> AsyncIterator[int]:
    timeouts = dataclasses.replace(settings, read_timeout=READ_TIMEOUT, keep_alive_timeout=KEEP_ALIVE)
    config = ServerConfig(
        create_app(timeouts, services), timeouts, host="127.0.0.1", port=0, log_level="warning"
    )
    async with in_process(config) as port:
        yield port


async def trickle(port: int, head: bytes, pieces: list[bytes], every: float) -> tuple[bytes, int]:
    """Sends `head`, then one piece every `every` seconds until the server closes the
    connection; what the server sent, and how many pieces went out by then."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    answer = asyncio.create_task(reader.read())
    sent = 0
    try:
        for piece in pieces:
            done, _ = await asyncio.wait({answer}, timeout=every)
            if done:
                break
            writer.write(piece)
            sent += 1
        return await asyncio.wait_for(answer, HANG_BOUND), sent
    finally:
        writer.close()


async def test_a_slowloris_sending_a_header_line_at_a_time_is_cut_off(port: int) -> None:
    lines = [f"X-Slow-{i}: still here\r\n".encode() for i in range(40)]
    answer, sent = await trickle(port, b"POST /graphql HTTP/1.1\r\nHost: x\r\n", lines, every=0.5)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert sent < len(lines)  # cut off mid-request, long before it finished


async def test_a_body_sent_slower_than_the_read_timeout_is_cut_off(port: int) -> None:
    head = b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
    answer, sent = await trickle(port, head, [b" "] * 40, every=0.5)
    assert answer == b""  # the connection closed; nothing answered a request never received
    assert sent < 40


async def test_a_connection_that_never_sends_a_request_is_closed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        answer = await asyncio.wait_for(reader.read(), HANG_BOUND)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer


async def test_normal_requests_on_a_keep_alive_connection_are_answered_and_it_then_closes(
    port: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(6):  # each request gets its own deadline, not the connection's
            writer.write(REQUEST[:20])  # in pieces, promptly
            await writer.drain()
            writer.write(REQUEST[20:])
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HANG_BOUND)
            assert head.startswith(b"HTTP/1.1 200 "), head
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
            )
            assert await reader.readexactly(length) == b'{"data":{"__typename":"Query"}}'
            await asyncio.sleep(READ_TIMEOUT / 4)  # six of them outlast one read timeout
        # idle after its last response: closed by the keep-alive timeout, no 408
        assert await asyncio.wait_for(reader.read(), HANG_BOUND) == b""
    finally:
        writer.close()


async def test_a_websocket_quiet_for_longer_than_the_read_timeout_stays_open(
    port: int, services: Services
) -> None:
    token = mint_token(services.settings.jwt_secret or "", "staff_1", "staff")
    async with GraphQLWS.connect(port) as ws:
        assert (await ws.init(token))["type"] == "connection_ack"
        await asyncio.sleep(READ_TIMEOUT * 2)
        await ws.subscribe("1", EVENTS)
        await services.execute(STAFF, CreateOrder(customer_id="cus_1"))
        assert len(await ws.data("1", 1)) == 1
