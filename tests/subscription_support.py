"""A graphql-transport-ws test client over `websockets`, and helpers for subscription tests."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TIMEOUT = 30.0  # a failure shows as a hang; this turns it into an error


class Closed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code} {reason}")
        self.code = code
        self.reason = reason


class GraphQLWS:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pings = 0  # server pings seen (each answered with a pong)
        self._inbox: dict[str | None, deque[dict[str, Any]]] = defaultdict(deque)

    @classmethod
    @asynccontextmanager
    async def connect(cls, port: int) -> AsyncIterator[GraphQLWS]:
        async with connect(
            f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-transport-ws"]  # type: ignore[list-item]
        ) as ws:
            yield cls(ws)

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def init(self, token: str | None) -> dict[str, Any]:
        await self.send(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"} if token else {}}
        )
        return await self.receive(None)

    async def subscribe(self, id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        await self.send({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})

    async def _read(self) -> dict[str, Any]:
        try:
            raw = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        except ConnectionClosed as closed:
            rcvd = closed.rcvd
            raise Closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "") from None
        assert isinstance(raw, str), "graphql-transport-ws messages are text frames"
        message: dict[str, Any] = json.loads(raw)
        return message

    async def receive(self, id: str | None) -> dict[str, Any]:
        """The next message for operation `id` (None: connection-level), answering pings."""
        while not self._inbox[id]:
            message = await self._read()
            if message["type"] == "ping":
                self.pings += 1
                await self.send({"type": "pong"})
                continue
            self._inbox[message.get("id")].append(message)
        return self._inbox[id].popleft()

    async def data(self, id: str, count: int) -> list[dict[str, Any]]:
        """The next `count` `next` payloads' data for `id`; anything else fails."""
        out = []
        while len(out) < count:
            message = await self.receive(id)
            assert message["type"] == "next" and "errors" not in message["payload"], message
            out.append(message["payload"]["data"])
        return out

    async def closed(self) -> Closed:
        """Reads until the server closes the socket; the close."""
        while True:
            try:
                await self._read()
            except Closed as closed:
                return closed


@asynccontextmanager
async def subscribed(
    api: Any, id: str, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
) -> AsyncIterator[GraphQLWS]:
    """A socket acknowledged (with `token`, else api's default token) and subscribed to `query` as `id`."""
    async with GraphQLWS.connect(api.port) as ws:
        await ws.init(token if token is not None else api.token())
        await ws.subscribe(id, query, variables)
        yield ws


async def gql_ok(api: Any, query: str, variables: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    body = await api.gql(query, variables, **kwargs)
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


CREATE = "mutation($c: ID!) { createOrder(input: {customerId: $c}) { order { id } position } }"
ADD = (
    "mutation($o: ID!, $s: String!) { addItem(input: {orderId: $o, sku: $s, quantity: 1,"
    ' unitPrice: "2.50"}) { position streamVersion } }'
)
EVENTS = (
    "subscription($after: String, $types: [String!], $stream: String) {"
    " events(after: $after, types: $types, streamId: $stream) { position streamId version type } }"
)


async def create_order(api: Any, customer: str = "cus_1") -> str:
    data = await gql_ok(api, CREATE, {"c": customer}, as_=(customer, "customer"))
    return data["createOrder"]["order"]["id"]  # type: ignore[no-any-return]


async def add_item(api: Any, order_id: str, sku: str = "SKU1", customer: str = "cus_1") -> int:
    data = await gql_ok(api, ADD, {"o": order_id, "s": sku}, as_=(customer, "customer"))
    return int(data["addItem"]["position"])
