"""Schema privacy (CONTRACT 7.5): with introspection off, no message suggests a name, over
HTTP and WebSocket; with it on, graphql-core's suggestions stay (they help developers)."""

from __future__ import annotations

from typing import Any

import pytest

from service.settings import Settings
from tests.conftest import Api
from tests.subscription_support import GraphQLWS

ORDERS = "{ edges { cursor } }"

# (document, variables): each draws a "Did you mean ...?" from graphql-core
WRONG_NAMES: dict[str, tuple[str, dict[str, Any]]] = {
    "field": ('{ ordr(id: "x") { id } }', {}),
    "argument": ('{ order(idd: "x") { id } }', {}),
    "type": ("query($s: OrderStatu) { orders(status: $s) " + ORDERS + " }", {}),
    "enum value": ("{ orders(status: DRAF) " + ORDERS + " }", {}),
    "enum value in a variable": ("query($s: OrderStatus) { orders(status: $s) " + ORDERS + " }", {"s": "DRAF"}),
    "input field": ('mutation { createOrder(input: {customerID: "c"}) { position } }', {}),
    "input field in a variable": (
        "mutation($i: CreateOrderInput!) { createOrder(input: $i) { position } }",
        {"i": {"customerId": "c", "currenc": "EUR"}},
    ),
}


@pytest.fixture(params=[True, False], ids=["introspection-on", "introspection-off"])
def settings(request: pytest.FixtureRequest) -> Settings:
    return Settings(
        jwt_secret="test-secret-0123456789abcdef0123456789abcdef",
        run_projections=False,
        run_relay=False,
        introspection=request.param,
    )


def suggests(messages: list[str]) -> bool:
    return any("Did you mean" in m for m in messages)


@pytest.mark.parametrize("case", list(WRONG_NAMES))
async def test_http_errors_suggest_names_only_with_introspection_on(api: Api, settings: Settings, case: str) -> None:
    query, variables = WRONG_NAMES[case]
    body = await api.gql(query, variables)
    assert "data" not in body and body["errors"], body
    assert all(e["extensions"]["code"] == "BAD_USER_INPUT" for e in body["errors"])
    assert suggests([e["message"] for e in body["errors"]]) is settings.introspection


async def test_websocket_errors_suggest_names_only_with_introspection_on(api: Api, settings: Settings) -> None:
    async with GraphQLWS.connect(api.port) as ws:
        await ws.init(api.token())
        messages = []
        for case, (query, variables) in WRONG_NAMES.items():
            await ws.subscribe(case, query, variables)
            refused = await ws.receive(case)
            assert refused["type"] == "error", refused
            messages += [e["message"] for e in refused["payload"]]
            assert all(e["extensions"]["code"] == "BAD_USER_INPUT" for e in refused["payload"])
        assert suggests(messages) is settings.introspection
