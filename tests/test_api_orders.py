"""Order mutations and event-store queries through the real HTTP server, as a frontend uses them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.test_http_protocol import event_count

ORDER = "id customerId status currency version cancellationReason createdAt updatedAt total { amount currency }"
LINES = "lines { sku quantity unitPrice { amount currency } discount { amount } lineTotal { amount } }"
EVENT = "id position streamId version type data recordedAt metadata { correlationId causationId userId service }"
PAYLOAD = f"order {{ {ORDER} {LINES} }} streamVersion position events {{ {EVENT} }}"


def mutation(name: str, input_type: str) -> str:
    return f"mutation($input: {input_type}!) {{ {name}(input: $input) {{ {PAYLOAD} }} }}"


CREATE = mutation("createOrder", "CreateOrderInput")
ADD = mutation("addItem", "AddItemInput")
REMOVE = mutation("removeItem", "RemoveItemInput")
SUBMIT = mutation("submitOrder", "SubmitOrderInput")
CANCEL = mutation("cancelOrder", "CancelOrderInput")


def data(body: dict[str, Any], field: str) -> dict[str, Any]:
    assert "errors" not in body, body
    return body["data"][field]  # type: ignore[no-any-return]


def error(body: dict[str, Any], code: str) -> dict[str, Any]:
    [err] = body["errors"]
    assert err["extensions"]["code"] == code, body
    assert body.get("data") is None, body
    return err  # type: ignore[no-any-return]


async def create(api: Api, customer: str = "cus_1", **extra: Any) -> str:
    body = await api.gql(CREATE, {"input": {"customerId": customer, **extra}}, as_=(customer, "customer"))
    return str(data(body, "createOrder")["order"]["id"])


async def add(api: Api, order_id: str, sku: str = "A", price: str = "1.00", **extra: Any) -> dict[str, Any]:
    return await api.gql(
        ADD, {"input": {"orderId": order_id, "sku": sku, "quantity": 1, "unitPrice": price, **extra}}
    )


async def test_order_lifecycle_through_every_mutation(api: Api) -> None:
    created = data(await api.gql(CREATE, {"input": {"customerId": "cus_1", "currency": "EUR"}}), "createOrder")
    order_id = created["order"]["id"]
    assert order_id.startswith("ord_") and len(order_id) == 30
    assert created["order"]["status"] == "DRAFT" and created["order"]["currency"] == "EUR"
    assert created["order"]["createdAt"].endswith("+00:00")
    assert created["streamVersion"] == 1 and created["position"] == created["events"][0]["position"]
    assert created["events"][0]["data"] == {"customer_id": "cus_1", "currency": "EUR"}
    assert created["events"][0]["streamId"] == f"order-{order_id}"

    added = data(
        await api.gql(ADD, {"input": {"orderId": order_id, "sku": "SKU-1", "quantity": 3, "unitPrice": "2.50", "discount": "0.50"}}),
        "addItem",
    )
    assert added["order"]["lines"] == [
        {"sku": "SKU-1", "quantity": 3, "unitPrice": {"amount": "2.50", "currency": "EUR"},
         "discount": {"amount": "0.50"}, "lineTotal": {"amount": "7.00"}}
    ]
    assert added["order"]["total"] == {"amount": "7.00", "currency": "EUR"}
    assert added["events"][0]["type"] == "item.added.v2"
    assert added["events"][0]["data"] == {"item_id": "SKU-1", "quantity": 3, "price": "2.50", "discount": "0.50"}
    data(await add(api, order_id, "SKU-2", "1"), "addItem")

    removed = data(await api.gql(REMOVE, {"input": {"orderId": order_id, "sku": "SKU-2"}}), "removeItem")
    assert [line["sku"] for line in removed["order"]["lines"]] == ["SKU-1"]
    assert removed["events"][0]["type"] == "item.removed.v1" and removed["streamVersion"] == 4

    submitted = data(await api.gql(SUBMIT, {"input": {"orderId": order_id}}), "submitOrder")
    assert submitted["order"]["status"] == "SUBMITTED"
    assert submitted["events"][0]["data"] == {"total": "7.00"}

    other = await create(api)
    cancelled = data(await api.gql(CANCEL, {"input": {"orderId": other, "reason": "changed my mind"}}), "cancelOrder")
    assert cancelled["order"]["status"] == "CANCELLED"
    assert cancelled["order"]["cancellationReason"] == "changed my mind"
    assert cancelled["events"][0]["type"] == "order.cancelled.v1"


async def test_client_order_id_and_zero_digit_currency(api: Api) -> None:
    order_id = await create(api, orderId="my-order.1", currency="JPY")
    assert order_id == "my-order.1"
    body = await add(api, order_id, price="500")
    assert data(body, "addItem")["order"]["total"] == {"amount": "500", "currency": "JPY"}
    assert error(await add(api, order_id, price="5.5"), "BAD_USER_INPUT")["message"].startswith("unitPrice")


async def test_event_store_queries(api: Api) -> None:
    order_id = await create(api)
    await add(api, order_id, "A", "0.10")
    await add(api, order_id, "B", "0.20")
    stream_id = f"order-{order_id}"

    events = (await api.gql(f'{{ stream(streamId: "{stream_id}", fromVersion: 2, first: 1) {{ {EVENT} }} }}'))["data"]["stream"]
    assert [(e["version"], e["type"]) for e in events] == [(2, "item.added.v2")]
    defaults = (await api.gql(f'{{ stream(streamId: "{stream_id}", fromVersion: null, first: null) {{ version }} }}'))
    assert [e["version"] for e in defaults["data"]["stream"]] == [1, 2, 3]

    page1 = (await api.gql("{ events(first: 2) { edges { cursor node { position type } } pageInfo { hasNextPage endCursor } } }"))["data"]["events"]
    assert [e["cursor"] for e in page1["edges"]] == ["1", "2"] and page1["pageInfo"] == {"hasNextPage": True, "endCursor": "2"}
    page2 = (await api.gql('{ events(after: "2") { edges { cursor } pageInfo { hasNextPage endCursor } } }'))["data"]["events"]
    assert page2 == {"edges": [{"cursor": "3"}], "pageInfo": {"hasNextPage": False, "endCursor": "3"}}
    typed = (await api.gql('{ events(types: ["order.created.v2"]) { edges { node { type } } } }'))["data"]["events"]
    assert typed["edges"] == [{"node": {"type": "order.created.v2"}}]

    head = await api.gql("{ headPosition }")
    assert head == {"data": {"headPosition": "3"}}

    v2 = (await api.gql(f'{{ orderAt(id: "{order_id}", version: 2) {{ version total {{ amount }} lines {{ sku }} }} }}'))["data"]["orderAt"]
    assert v2 == {"version": 2, "total": {"amount": "0.10"}, "lines": [{"sku": "A"}]}
    first_event = events = (await api.gql(f'{{ stream(streamId: "{stream_id}") {{ id recordedAt }} }}'))["data"]["stream"]
    at = first_event[0]["recordedAt"]
    then = (await api.gql("query($id: ID!, $at: DateTime) { orderAt(id: $id, at: $at) { version } }", {"id": order_id, "at": at}))
    assert then["data"]["orderAt"]["version"] == 1

    node = (await api.gql(f'{{ node(id: "{events[1]["id"]}") {{ id ... on Event {{ type version }} }} }}'))["data"]["node"]
    assert node == {"id": events[1]["id"], "type": "item.added.v2", "version": 2}


async def test_correlation_id_is_echoed_in_the_response(api: Api) -> None:
    given = await api.http.post("/graphql", json={"query": "{ __typename }"}, headers={"X-Correlation-ID": "req-7"})
    assert given.headers["x-correlation-id"] == "req-7"
    generated = await api.http.post("/graphql", json={"query": "{ __typename }"})
    assert len(generated.headers["x-correlation-id"]) == 36


async def test_correlation_id_and_user_id_reach_the_events(api: Api) -> None:
    body = await api.gql(
        CREATE, {"input": {"customerId": "cus_1"}}, headers={"X-Correlation-ID": "checkout-42"}
    )
    metadata = data(body, "createOrder")["events"][0]["metadata"]
    assert metadata["correlationId"] == "checkout-42" and metadata["userId"] == "cus_1"
    assert metadata["service"] == "eventgraph" and metadata["causationId"]
    staff = await api.gql(
        ADD,
        {"input": {"orderId": data(body, "createOrder")["order"]["id"], "sku": "A", "quantity": 1, "unitPrice": "1"}},
        as_=("alice", "staff"),
    )
    assert data(staff, "addItem")["events"][0]["metadata"]["userId"] == "alice"
    generated = data(await api.gql(CREATE, {"input": {"customerId": "cus_1"}}), "createOrder")
    assert len(generated["events"][0]["metadata"]["correlationId"]) == 36  # a fresh UUID
    trace = await api.gql('{ trace(correlationId: "checkout-42") { type metadata { correlationId } } }')
    assert trace["data"]["trace"] == [{"type": "order.created.v2", "metadata": {"correlationId": "checkout-42"}}]


async def test_idempotency_key_returns_the_first_payload_and_appends_once(api: Api, dsn: str) -> None:
    order_id = await create(api)
    first = data(await add(api, order_id, idempotencyKey="add-A-1"), "addItem")
    again = data(await add(api, order_id, idempotencyKey="add-A-1"), "addItem")
    assert again["position"] == first["position"] and again["streamVersion"] == first["streamVersion"] == 2
    assert [e["id"] for e in again["events"]] == [e["id"] for e in first["events"]]
    assert await event_count(dsn) == 2
    # the key is per caller: another caller's same key is another command
    data(await api.gql(ADD, {"input": {"orderId": order_id, "sku": "B", "quantity": 1, "unitPrice": "1", "idempotencyKey": "add-A-1"}}, as_=("ops", "staff")), "addItem")
    assert await event_count(dsn) == 3
    create_once = {"input": {"customerId": "cus_1", "orderId": "ord_client_1", "idempotencyKey": "new-1"}}
    created = data(await api.gql(CREATE, create_once), "createOrder")
    repeated = data(await api.gql(CREATE, create_once), "createOrder")
    assert repeated["order"]["id"] == created["order"]["id"] == "ord_client_1"
    assert repeated["position"] == created["position"]
    assert await event_count(dsn) == 4


async def test_concurrency_conflict_carries_versions_and_appends_nothing(api: Api, dsn: str) -> None:
    order_id = await create(api)
    ok = data(await add(api, order_id, expectedVersion=1), "addItem")
    assert ok["streamVersion"] == 2
    stale = await add(api, order_id, "B", expectedVersion=1)
    err = error(stale, "CONCURRENCY_CONFLICT")
    assert err["extensions"] == {"code": "CONCURRENCY_CONFLICT", "expectedVersion": 1, "actualVersion": 2}
    for query, variables in (
        (REMOVE, {"orderId": order_id, "sku": "A", "expectedVersion": 5}),
        (SUBMIT, {"orderId": order_id, "expectedVersion": 0}),
        (CANCEL, {"orderId": order_id, "reason": "x", "expectedVersion": 3}),
    ):
        assert error(await api.gql(query, {"input": variables}), "CONCURRENCY_CONFLICT")["extensions"]["actualVersion"] == 2
    assert await event_count(dsn) == 2


@pytest.mark.parametrize(
    ("price", "discount", "quantity"),
    [
        ("abc", "0", 1),
        ("NaN", "0", 1),
        ("Infinity", "0", 1),
        ("-1.00", "0", 1),
        ("0", "0", 1),
        ("1.001", "0", 1),  # USD has two digits
        ("", "0", 1),
        ("1e400", "0", 1),
        ("1.00", "abc", 1),
        ("1.00", "-0.01", 1),
        ("1.00", "2.00", 1),  # more than the line
        ("1.00", "0", 0),
        ("1.00", "0", -3),
    ],
)
async def test_bad_item_input_is_bad_user_input(
    api: Api, dsn: str, price: str, discount: str, quantity: int
) -> None:
    order_id = await create(api)
    body = await api.gql(
        ADD,
        {"input": {"orderId": order_id, "sku": "A", "quantity": quantity, "unitPrice": price, "discount": discount}},
    )
    err = error(body, "BAD_USER_INPUT")
    assert "Internal" not in err["message"]
    assert await event_count(dsn) == 1


async def test_decimal_literal_and_type_errors_are_bad_user_input(api: Api, dsn: str) -> None:
    order_id = await create(api)
    literal = await api.gql(
        f'mutation {{ addItem(input: {{orderId: "{order_id}", sku: "A", quantity: 1, unitPrice: "abc"}}) {{ position }} }}'
    )
    assert "Decimal" in error(literal, "BAD_USER_INPUT")["message"]
    number = await api.gql(ADD, {"input": {"orderId": order_id, "sku": "A", "quantity": 1, "unitPrice": 2.5}})
    assert data(number, "addItem")["order"]["total"]["amount"] == "2.50"  # a JSON number is read exactly as written
    for wrong in (True, [1], {"a": 1}):
        assert "Decimal" in error(
            await api.gql(ADD, {"input": {"orderId": order_id, "sku": "B", "quantity": 1, "unitPrice": wrong}}),
            "BAD_USER_INPUT",
        )["message"]
    assert await event_count(dsn) == 2


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (CREATE, {"customerId": "cus_1", "currency": "XYZ"}),
        (CREATE, {"customerId": "cus_1", "currency": "usd"}),
        (CREATE, {"customerId": "cus_1", "orderId": "has spaces"}),
        (CREATE, {"customerId": "cus_1", "orderId": "x" * 65}),
        (CREATE, {"customerId": "cus_1", "orderId": ""}),
        (CREATE, {"customerId": "cus_1", "idempotencyKey": ""}),
        (ADD, {"orderId": "../etc", "sku": "A", "quantity": 1, "unitPrice": "1"}),
        (SUBMIT, {"orderId": "ord_1", "expectedVersion": -1}),
        (CANCEL, {"orderId": "ord_1", "reason": ""}),
    ],
)
async def test_malformed_ids_and_values_are_bad_user_input(
    api: Api, dsn: str, query: str, variables: dict[str, Any]
) -> None:
    if query is CANCEL:
        await create(api, orderId="ord_1")
    before = await event_count(dsn)
    error(await api.gql(query, {"input": variables}), "BAD_USER_INPUT")
    assert await event_count(dsn) == before


async def test_malformed_ids_in_queries_are_bad_user_input(api: Api) -> None:
    for query in (
        '{ orderAt(id: "not an id") { id } }',
        '{ orderAt(id: "ord_1", version: 0) { id } }',
        '{ events(after: "-1") { edges { cursor } } }',
        '{ events(after: "abc") { edges { cursor } } }',
        '{ events(first: 0) { edges { cursor } } }',
        '{ events(first: 100000) { edges { cursor } } }',
        '{ stream(streamId: "order-x", fromVersion: 0) { id } }',
        '{ node(id: "00000000-0000-0000-0000-zzzzzzzzzzzz") { id } }',
    ):
        [err] = (await api.gql(query, as_=("ops", "staff")))["errors"]
        assert err["extensions"]["code"] == "BAD_USER_INPUT", query


async def test_rule_violations_append_nothing(api: Api, dsn: str) -> None:
    order_id = await create(api)
    assert "empty" in error(await api.gql(SUBMIT, {"input": {"orderId": order_id}}), "RULE_VIOLATION")["message"]
    error(await api.gql(REMOVE, {"input": {"orderId": order_id, "sku": "nope"}}), "RULE_VIOLATION")
    data(await add(api, order_id), "addItem")
    data(await api.gql(SUBMIT, {"input": {"orderId": order_id}}), "submitOrder")
    error(await add(api, order_id, "B"), "RULE_VIOLATION")
    error(await api.gql(SUBMIT, {"input": {"orderId": order_id}}), "RULE_VIOLATION")
    error(await api.gql(CREATE, {"input": {"customerId": "cus_1", "orderId": order_id}}), "RULE_VIOLATION")
    assert await event_count(dsn) == 3


async def test_not_found(api: Api, dsn: str) -> None:
    for query, variables in (
        (ADD, {"input": {"orderId": "ord_missing", "sku": "A", "quantity": 1, "unitPrice": "1"}}),
        (REMOVE, {"input": {"orderId": "ord_missing", "sku": "A"}}),
        (SUBMIT, {"input": {"orderId": "ord_missing"}}),
        (CANCEL, {"input": {"orderId": "ord_missing", "reason": "x"}}),
    ):
        error(await api.gql(query, variables, as_=("ops", "staff")), "NOT_FOUND")
    for query in (
        '{ orderAt(id: "ord_missing") { id } }',
        '{ stream(streamId: "order-ord_missing") { id } }',
        '{ node(id: "5f0c3c1e-6a0e-4f3e-9b7a-1c2d3e4f5a6b") { id } }',
    ):
        body = await api.gql(query, as_=("ops", "staff"))
        [err] = body["errors"]
        assert err["extensions"]["code"] == "NOT_FOUND", query
    assert await event_count(dsn) == 0
