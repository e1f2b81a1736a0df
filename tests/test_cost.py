"""Cost analysis (CONTRACT 7.2) over real HTTP and WebSocket: priced before anything runs.

Each selected field costs 1; what a list holds is paid once per item it can hold (`first`
for a connection's edges and `stream`, the page limit for `trace`, 500 for `lines`).
"""

from __future__ import annotations

from typing import Any

import pytest
from graphql import GraphQLList, GraphQLObjectType, get_nullable_type

from api.cost import CONNECTION_EDGES, LIST_SIZES
from api.schema import build_schema
from service.settings import Settings
from tests.conftest import Api
from tests.subscription_support import GraphQLWS, gql_ok

TOO_COMPLEX = "QUERY_TOO_COMPLEX"
MAX_COST = 100_000

ORDERS_WITH_LINES = "orders(first: {n}) {{ edges {{ node {{ id lines {{ sku quantity }} }} }} }}"


def aliases(count: int, field: str) -> str:
    return " ".join(f"a{i}: {field}" for i in range(count))


def refused_for_cost(body: dict[str, Any]) -> dict[str, Any]:
    assert "data" not in body, body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == TOO_COMPLEX
    assert error["extensions"]["maxCost"] == MAX_COST
    return error["extensions"]  # type: ignore[no-any-return]


async def test_twenty_orders_with_their_lines_run(api: Api) -> None:
    # 1 (orders) + 1 (edges) + 20 x (node + id + lines + 500 x (sku + quantity)) = 20,062
    data = await gql_ok(api, "{ " + ORDERS_WITH_LINES.format(n=20) + " }")
    assert data == {"orders": {"edges": []}}


async def test_thirty_aliased_pages_of_orders_with_lines_do_not(api: Api) -> None:
    query = "{ " + aliases(30, "orders(first: 25) { edges { node { lines { sku } } } }") + " }"
    extensions = refused_for_cost(await api.gql(query))
    assert extensions["cost"] == 30 * (1 + 1 + 25 * (1 + 1 + 500 * 1))


async def test_over_get_too(api: Api) -> None:
    query = "{ " + aliases(30, "orders(first: 25) { edges { node { lines { sku } } } }") + " }"
    response = await api.http.get(
        "/graphql",
        params={"query": query},
        headers={"Authorization": f"Bearer {api.token()}", "Accept": "application/graphql-response+json"},
    )
    assert response.status_code == 400  # a request error: nothing ran
    refused_for_cost(response.json())


async def test_a_refused_mutation_appends_nothing(api: Api) -> None:
    # each payload's order with every line priced at 500: 20 x (1 + 1 + 1 + 500 x 11) > 100,000
    lines = "lines { sku quantity unitPrice { amount currency } discount { amount currency } lineTotal { amount currency } }"
    fields = [
        f'o{i}: createOrder(input: {{customerId: "cus_1", orderId: "cost-{i}"}}) {{ order {{ {lines} }} }}'
        for i in range(20)
    ]
    refused_for_cost(await api.gql("mutation { " + " ".join(fields) + " }"))
    assert await gql_ok(api, "{ headPosition }") == {"headPosition": "0"}  # the log is empty


async def test_fragments_named_and_inline_cost_the_same(api: Api) -> None:
    direct = await api.gql("{ " + aliases(30, ORDERS_WITH_LINES.format(n=25)) + " }")
    named = await api.gql(
        "{ " + aliases(30, "orders(first: 25) { ...Page }") + " }"
        " fragment Page on OrderConnection { edges { node { ...Order } } }"
        " fragment Order on Order { id ... on Order { lines { ...Line } } }"
        " fragment Line on OrderLine { sku quantity }"
    )
    assert refused_for_cost(named)["cost"] == refused_for_cost(direct)["cost"]


async def test_a_fragment_spread_twice_per_level_is_priced_without_blowing_up(api: Api) -> None:
    # 2^40 spreads of the last fragment: priced by walking each fragment once
    chain = " ".join(f"fragment F{i} on Order {{ ...F{i + 1} ... on Order {{ ...F{i + 1} }} }}" for i in range(40))
    query = f'{{ order(id: "x") {{ ...F0 }} }} {chain} fragment F40 on Order {{ lines {{ sku }} }}'
    assert refused_for_cost(await api.gql(query))["cost"] == 1 + 2**40 * (1 + 500)


async def test_the_variables_give_the_page_size(api: Api) -> None:
    events = "events(first: $n) { edges { node { id type streamId version position } } }"
    query = "query($n: Int) { " + aliases(20, events) + " }"
    assert "errors" not in await api.gql(query, {"n": 100}, as_=("staff_1", "staff"))
    extensions = refused_for_cost(await api.gql(query, {"n": 1000}, as_=("staff_1", "staff")))
    assert extensions["cost"] == 20 * (1 + 1 + 1000 * (1 + 5))
    # absent, the argument's default (100) applies, and an operation default replaces it
    assert "errors" not in await api.gql(query, as_=("staff_1", "staff"))
    defaulted = "query($n: Int = 1000) { " + aliases(20, events) + " }"
    refused_for_cost(await api.gql(defaulted, as_=("staff_1", "staff")))


async def test_trace_is_priced_at_the_page_limit(api: Api) -> None:
    field = 'trace(correlationId: "c") { id type streamId version position recordedAt }'
    assert refused_for_cost(await api.gql("{ " + aliases(20, field) + " }"))["cost"] == 20 * (1 + 1000 * 6)


async def test_introspection_is_not_priced(api: Api) -> None:
    body = await api.gql("{ __schema { types { name fields { name args { name type { name } } } } } }", as_=None)
    assert "errors" not in body and body["data"]["__schema"]["types"]


@pytest.mark.parametrize(
    ("field", "cap"),
    [("orders(first: {n}) { edges { cursor } }", 100), ("events(first: {n}) { edges { cursor } }", 1000),
     ('stream(streamId: "order-x", first: {n}) { id }', 1000)],
    ids=["orders", "events", "stream"],
)
async def test_page_sizes_past_the_cap_are_bad_user_input(api: Api, field: str, cap: int) -> None:
    staff = ("staff_1", "staff")
    too_many = await api.gql("{ " + field.replace("{n}", str(cap + 1)) + " }", as_=staff)
    assert [e["extensions"]["code"] for e in too_many["errors"]] == ["BAD_USER_INPUT"]
    assert f"between 1 and {cap}" in too_many["errors"][0]["message"]
    at_cap = await api.gql("{ " + field.replace("{n}", str(cap)) + " }", as_=staff)
    assert all(e["extensions"]["code"] == "NOT_FOUND" for e in at_cap.get("errors", [])), at_cap


async def test_websocket_operations_are_priced_too(api: Api) -> None:
    async with GraphQLWS.connect(api.port) as ws:
        await ws.init(api.token())
        await ws.subscribe("costly", "{ " + aliases(30, ORDERS_WITH_LINES.format(n=25)) + " }")
        refused = await ws.receive("costly")
        assert refused["type"] == "error", refused
        (error,) = refused["payload"]
        assert error["extensions"] == {"code": TOO_COMPLEX, "cost": 30 * (2 + 25 * 1003), "maxCost": MAX_COST}
        query = "query($n: Int) { " + ORDERS_WITH_LINES.format(n="$n") + " }"
        await ws.subscribe("fits", query, {"n": 20})
        assert await ws.data("fits", 1) == [{"orders": {"edges": []}}]


def test_every_list_in_the_schema_has_a_size() -> None:
    # a new list field gets priced on purpose, not as an unknown list
    schema = build_schema(Settings()).graphql
    unsized = [
        f"{type_.name}.{name}"
        for type_ in schema.type_map.values()
        if isinstance(type_, GraphQLObjectType) and not type_.name.startswith("__")
        for name, field in type_.fields.items()
        if isinstance(get_nullable_type(field.type), GraphQLList)
        and (type_.name, name) not in LIST_SIZES
        and not (name == CONNECTION_EDGES and type_.name.endswith("Connection"))
    ]
    assert unsized == []
