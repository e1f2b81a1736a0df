"""Hostile input is refused at the edge (CONTRACT 7.1): NUL characters, loose decimals,
huge inputs in messages, other customers' versions, reused idempotency keys; over HTTP
and WebSocket, with nothing appended and the service answering everyone afterwards."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from tests.conftest import Api
from tests.subscription_support import Closed, GraphQLWS
from tests.test_api_orders import ADD, CANCEL, CREATE, REMOVE, SUBMIT, create, data, error
from tests.test_http_protocol import event_count

NUL = "x\u0000y"
STAFF = ("ops", "staff")
REGISTER = "mutation($input: RegisterProductInput!) { registerProduct(input: $input) { position } }"
DEPOSIT = "mutation($input: DepositFundsInput!) { depositFunds(input: $input) { position } }"


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    [err] = body["errors"]
    return err  # type: ignore[no-any-return]


async def answers_normally(api: Api) -> None:
    """Another client's command and query still work."""
    order_id = await create(api, "cus_9")
    body = await api.gql("query($id: ID!) { orderAt(id: $id) { id } }", {"id": order_id}, as_=("cus_9", "customer"))
    assert data(body, "orderAt")["id"] == order_id


# (query, variables, caller): every place a request's string reaches the database. A
# variable named "o" is replaced by the id of an order of cus_1 created first.
NUL_CASES: list[tuple[str, dict[str, Any], tuple[str, str]]] = [
    (CANCEL, {"input": {"orderId": "o", "reason": NUL}}, ("cus_1", "customer")),
    (CANCEL, {"input": {"orderId": "o", "reason": "r", "idempotencyKey": NUL}}, ("cus_1", "customer")),
    (ADD, {"input": {"orderId": "o", "sku": NUL, "quantity": 1, "unitPrice": "1"}}, ("cus_1", "customer")),
    (REMOVE, {"input": {"orderId": NUL, "sku": "A"}}, ("cus_1", "customer")),
    (SUBMIT, {"input": {"orderId": "o", "idempotencyKey": NUL}}, ("cus_1", "customer")),
    (CREATE, {"input": {"customerId": "cus_1", "orderId": NUL}}, ("cus_1", "customer")),
    (CREATE, {"input": {"customerId": "cus_1", "currency": NUL}}, ("cus_1", "customer")),
    (CREATE, {"input": {"customerId": NUL}}, STAFF),
    (REGISTER, {"input": {"sku": "MUG", "name": NUL, "price": "1.00"}}, STAFF),
    (REGISTER, {"input": {"sku": NUL, "name": "Mug", "price": "1.00"}}, STAFF),
    (REGISTER, {"input": {"sku": "MUG", "name": "Mug", "price": "1.00", "currency": NUL}}, STAFF),
    (DEPOSIT, {"input": {"customerId": NUL, "amount": "1.00"}}, STAFF),
    ("mutation($s: String!) { restockProduct(input: {sku: $s, quantity: 1}) { position } }", {"s": NUL}, STAFF),
    ("query($s: String!) { stream(streamId: $s) { id } }", {"s": NUL}, STAFF),
    ("query($s: String!) { trace(correlationId: $s) { id } }", {"s": NUL}, STAFF),
    ("query($t: [String!]) { events(types: $t) { edges { cursor } } }", {"t": ["order.created.v2", NUL]}, STAFF),
    ("query($a: String) { events(after: $a) { edges { cursor } } }", {"a": NUL}, STAFF),
    ("query($c: ID) { orders(customerId: $c) { edges { cursor } } }", {"c": NUL}, STAFF),
    ("query($c: String) { orders(consistentWith: $c) { edges { cursor } } }", {"c": NUL}, STAFF),
    ("query($id: ID!) { order(id: $id) { id } }", {"id": NUL}, STAFF),
    ("query($id: ID!) { orderAt(id: $id) { id } }", {"id": NUL}, STAFF),
    ("query($id: ID!) { node(id: $id) { id } }", {"id": NUL}, STAFF),
    ("query($s: String!) { product(sku: $s) { sku } }", {"s": NUL}, STAFF),
    ("query($c: ID!) { wallet(customerId: $c) { customerId } }", {"c": NUL}, STAFF),
    # literals in the document, not variables
    ('mutation { cancelOrder(input: {orderId: "o", reason: "x\\u0000y"}) { position } }', {}, ("cus_1", "customer")),
    ('{ stream(streamId: "order-\\u0000") { id } }', {}, STAFF),
]


def with_order(value: Any, order_id: str) -> Any:
    if isinstance(value, dict):
        return {k: order_id if (k == "orderId" and v == "o") else with_order(v, order_id) for k, v in value.items()}
    return value


def case_id(query: str, variables: dict[str, Any]) -> str:
    """e.g. "cancelOrder.reason", "stream.literal": the field and where the NUL is."""
    field = re.search(r"\b([a-z]\w*)\(", query.split("{", 1)[1])
    found = [k for k, v in flatten(variables) if NUL in v]
    return f"{field[1] if field else '?'}.{found[0] if found else 'literal'}"


def flatten(value: Any, key: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in flatten(v, k)]
    if isinstance(value, list):
        return [pair for v in value for pair in flatten(v, key)]
    return [(key, value)] if isinstance(value, str) else []


@pytest.mark.parametrize(("query", "variables", "caller"), NUL_CASES, ids=[case_id(q, v) for q, v, _ in NUL_CASES])
async def test_nul_anywhere_is_bad_user_input_and_reaches_no_database(
    api: Api, dsn: str, query: str, variables: dict[str, Any], caller: tuple[str, str]
) -> None:
    order_id = await create(api, "cus_1")
    query = query.replace('orderId: "o"', f'orderId: "{order_id}"')
    before = await event_count(dsn)
    err = only_error(await api.gql(query, with_order(variables, order_id), as_=caller))
    assert err["extensions"]["code"] == "BAD_USER_INPUT", err
    assert "NUL" in err["message"]
    assert await event_count(dsn) == before
    await answers_normally(api)


async def test_fifteen_nul_cancellations_then_commands_still_work(api: Api, dsn: str) -> None:
    order_id = await create(api, "cus_1")
    bad = {"input": {"orderId": order_id, "reason": NUL}}
    bodies = await asyncio.gather(*(api.gql(CANCEL, bad) for _ in range(15)))
    assert {only_error(b)["extensions"]["code"] for b in bodies} == {"BAD_USER_INPUT"}
    assert await event_count(dsn) == 1
    cancelled = data(await api.gql(CANCEL, {"input": {"orderId": order_id, "reason": "changed my mind"}}), "cancelOrder")
    assert cancelled["order"]["status"] == "CANCELLED"
    await answers_normally(api)


async def test_nul_over_websocket_is_bad_user_input(api: Api, dsn: str) -> None:
    order_id = await create(api, "cus_1")
    async with GraphQLWS.connect(api.port) as ws:
        assert (await ws.init(api.token("cus_1")))["type"] == "connection_ack"
        await ws.subscribe("m", CANCEL, {"input": {"orderId": order_id, "reason": NUL}})
        await ws.subscribe("s", "subscription($s: String) { events(streamId: $s) { position } }", {"s": NUL})
        await ws.subscribe("t", 'subscription { events(types: ["a\\u0000"]) { position } }')
        for id in ("m", "s", "t"):
            message = await ws.receive(id)
            errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
            assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"], message
        # the socket serves the next operation
        await ws.subscribe("ok", CANCEL, {"input": {"orderId": order_id, "reason": "fine"}})
        (ok,) = await ws.data("ok", 1)
        assert ok["cancelOrder"]["order"]["status"] == "CANCELLED"
    assert await event_count(dsn) == 2


async def test_lone_surrogate_over_websocket_is_bad_user_input(api: Api, dsn: str) -> None:
    """Python's JSON parser (the WebSocket's) accepts "\\ud800"; PostgreSQL cannot store it."""
    order_id = await create(api, "cus_1")
    async with GraphQLWS.connect(api.port) as ws:
        await ws.init(api.token("cus_1"))
        raw = json.dumps({"id": "1", "type": "subscribe", "payload": {"query": CANCEL, "variables": {}}})
        variables = '"variables": {"input": {"orderId": "ORDER", "reason": "a\\ud800"}}'.replace("ORDER", order_id)
        raw = raw.replace('"variables": {}', variables)
        await ws.ws.send(raw)
        message = await ws.receive("1")
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"], message
        assert "surrogate" in errors[0]["message"]
    assert await event_count(dsn) == 1
    await answers_normally(api)


async def raw_request(port: int, header: bytes) -> tuple[int, bytes]:
    """A POST with a hand-made header line (clients refuse to send a NUL in a header)."""
    body = json.dumps({"query": "{ __typename }"}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
        + header
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), payload


async def test_nul_in_correlation_id_header_is_refused(api: Api) -> None:
    status, payload = await raw_request(api.port, b"X-Correlation-ID: a\x00b")
    assert status == 400
    if payload.startswith(b"{"):  # answered by the app, not by the HTTP parser
        assert json.loads(payload)["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    await answers_normally(api)


# ---- strict decimals


LOOSE_DECIMALS = ["1e1000000", "1e2", "1E2", "1_0", "\u0661", " 1.00", "1.00 ", "+1", "NaN", "nan", "Infinity",
                  "-Infinity", "", "1.", ".5", "-", "0x10", "1,00", "--1", "1.0.0", "\uff11", "9" * 1_000_000]


async def test_loose_decimals_are_bad_user_input(api: Api, dsn: str) -> None:
    order_id = await create(api)
    for price in LOOSE_DECIMALS:
        body = await api.gql(ADD, {"input": {"orderId": order_id, "sku": "A", "quantity": 1, "unitPrice": price}})
        err = only_error(body)
        assert err["extensions"]["code"] == "BAD_USER_INPUT", (price[:20], err)
        assert len(err["message"]) < 400
    assert await event_count(dsn) == 1


async def test_loose_decimal_literal_and_staff_amounts_are_bad_user_input(api: Api, dsn: str) -> None:
    for query in (
        'mutation { registerProduct(input: {sku: "MUG", name: "Mug", price: "1e1000000"}) { position } }',
        'mutation { depositFunds(input: {customerId: "cus_1", amount: "1_0"}) { position } }',
        "mutation { depositFunds(input: {customerId: \"cus_1\", amount: 1e2}) { position } }",
    ):
        assert only_error(await api.gql(query, as_=STAFF))["extensions"]["code"] == "BAD_USER_INPUT", query
    assert await event_count(dsn) == 0


@pytest.mark.parametrize(("price", "total"), [("12", "12.00"), ("-0", None), ("0.50", "0.50"), ("007.5", "7.50")])
async def test_strict_decimals_still_accept_plain_numbers(api: Api, price: str, total: str | None) -> None:
    order_id = await create(api)
    body = await api.gql(ADD, {"input": {"orderId": order_id, "sku": "A", "quantity": 1, "unitPrice": price}})
    if total is None:  # zero price: a domain rule, not a parse error
        assert only_error(body)["extensions"]["code"] != "INTERNAL_SERVER_ERROR"
    else:
        assert data(body, "addItem")["order"]["total"]["amount"] == total


async def test_loose_decimal_over_websocket(api: Api, dsn: str) -> None:
    order_id = await create(api)
    async with GraphQLWS.connect(api.port) as ws:
        await ws.init(api.token("cus_1"))
        await ws.subscribe("1", ADD, {"input": {"orderId": order_id, "sku": "A", "quantity": 1, "unitPrice": "1e1000000"}})
        message = await ws.receive("1")
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"]
    assert await event_count(dsn) == 1


@pytest.mark.parametrize(
    "query",
    [
        '{ events(after: "9223372036854775808") { edges { cursor } } }',
        '{ events(after: "\u00b2") { edges { cursor } } }',
        '{ orders(consistentWith: "\u0661") { edges { cursor } } }',
        '{ orderAt(id: "ord_1", at: "0001-01-01T00:00:00+14:00") { id } }',
        '{ orderAt(id: "ord_1", at: "9999-12-31T23:59:59-14:00") { id } }',
    ],
)
async def test_out_of_range_positions_and_instants_are_bad_user_input(api: Api, query: str) -> None:
    err = only_error(await api.gql(query, as_=STAFF))
    assert err["extensions"]["code"] == "BAD_USER_INPUT", err


async def test_an_id_with_a_trailing_newline_is_malformed(api: Api, dsn: str) -> None:
    for input in ({"customerId": "cus_1", "orderId": "ord_1\n"}, {"customerId": "cus_1\n"}):
        err = only_error(await api.gql(CREATE, {"input": input}, as_=STAFF))
        assert err["extensions"]["code"] == "BAD_USER_INPUT", err
    assert await event_count(dsn) == 0


# ---- at most 200 characters of input quoted


def longest_run(message: str, char: str) -> int:
    best = run = 0
    for c in message:
        run = run + 1 if c == char else 0
        best = max(best, run)
    return best


HUGE = "Z" * 300_000


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (ADD, {"input": {"orderId": "o", "sku": "A", "quantity": 1, "unitPrice": HUGE}}),
        (ADD, {"input": {"orderId": "o", "sku": "A", "quantity": HUGE, "unitPrice": "1"}}),
        (ADD, {"input": {"orderId": HUGE, "sku": "A", "quantity": 1, "unitPrice": "1"}}),
        (CREATE, {"input": {"customerId": "cus_1", "currency": HUGE}}),
        (CREATE, {"input": {"customerId": "cus_1", "idempotencyKey": HUGE}}),
        (CANCEL, {"input": {"orderId": "o", "reason": "r", "expectedVersion": HUGE}}),
        ("query($s: OrderStatus) { orders(status: $s) { edges { cursor } } }", {"s": HUGE}),
        ("query($a: String) { events(after: $a) { edges { cursor } } }", {"a": HUGE}),
        (f'{{ orderAt(id: "{HUGE}") {{ id }} }}', {}),
        (f'{{ stream(streamId: "x", first: "{HUGE}") {{ id }} }}', {}),
        (f"{{ {HUGE[:200_000]} }}", {}),
        (f'{{ orders(status: {HUGE[:200_000]}) {{ edges {{ cursor }} }} }}', {}),
    ],
    ids=lambda v: str(v)[:30] if isinstance(v, str) else "",
)
async def test_error_messages_quote_at_most_200_characters(api: Api, query: str, variables: dict[str, Any]) -> None:
    order_id = await create(api)
    response = await api.http.post(
        "/graphql",
        json={"query": query, "variables": with_order(variables, order_id)},
        headers={"Authorization": f"Bearer {api.token()}"},
    )
    body = response.json()
    assert body["errors"], body
    for err in body["errors"]:
        assert err["extensions"]["code"] in ("BAD_USER_INPUT", "NOT_FOUND"), err
        assert longest_run(err["message"], "Z") <= 200, len(err["message"])
        assert len(err["message"]) <= 600


async def test_request_errors_quote_at_most_200_characters(api: Api) -> None:
    response = await api.http.post("/graphql", json={"query": "query A { __typename }", "operationName": HUGE})
    [err] = response.json()["errors"]
    assert err["extensions"]["code"] == "BAD_USER_INPUT"
    assert longest_run(err["message"], "Z") <= 200


async def test_websocket_messages_quote_at_most_200_characters(api: Api) -> None:
    async with GraphQLWS.connect(api.port) as ws:
        await ws.init(api.token("cus_1"))
        await ws.subscribe("1", "subscription($a: String) { events(after: $a) { position } }", {"a": HUGE})
        await ws.subscribe("2", f'subscription {{ orderChanged(id: "{HUGE}") {{ id }} }}')
        for id in ("1", "2"):
            message = await ws.receive(id)
            errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
            assert errors and all(longest_run(e["message"], "Z") <= 200 for e in errors), message


# ---- ownership before version


async def test_another_customers_order_is_not_found_whatever_the_expected_version(api: Api, dsn: str) -> None:
    theirs = await create(api, "cus_2")
    before = await event_count(dsn)
    commands = [
        (ADD, {"orderId": theirs, "sku": "A", "quantity": 1, "unitPrice": "1"}),
        (REMOVE, {"orderId": theirs, "sku": "A"}),
        (SUBMIT, {"orderId": theirs}),
        (CANCEL, {"orderId": theirs, "reason": "r"}),
    ]
    messages = set()
    for query, input in commands:
        for version in (None, 0, 1, 99):
            body = await api.gql(query, {"input": {**input, "expectedVersion": version}})
            err = error(body, "NOT_FOUND")
            assert "actualVersion" not in err["extensions"] and "expectedVersion" not in err["extensions"]
            messages.add(err["message"].replace(theirs, "<id>"))
        missing = await api.gql(query, {"input": {**input, "orderId": "ord_missing", "expectedVersion": 5}})
        messages.add(error(missing, "NOT_FOUND")["message"].replace("ord_missing", "<id>"))
    assert len(messages) == 1, messages  # another's order reads exactly like a missing one
    assert await event_count(dsn) == before
    # its owner still gets the conflict
    conflict = await api.gql(SUBMIT, {"input": {"orderId": theirs, "expectedVersion": 5}}, as_=("cus_2", "customer"))
    assert error(conflict, "CONCURRENCY_CONFLICT")["extensions"]["actualVersion"] == 1


async def test_taken_order_id_is_the_same_rule_violation_whoever_owns_it(api: Api, dsn: str) -> None:
    await create(api, "cus_2", orderId="ord_taken")
    await create(api, "cus_1", orderId="ord_mine")
    theirs = error(await api.gql(CREATE, {"input": {"customerId": "cus_1", "orderId": "ord_taken"}}), "RULE_VIOLATION")
    mine = error(await api.gql(CREATE, {"input": {"customerId": "cus_1", "orderId": "ord_mine"}}), "RULE_VIOLATION")
    assert theirs["message"].replace("ord_taken", "<id>") == mine["message"].replace("ord_mine", "<id>")
    assert await event_count(dsn) == 2


# ---- idempotency keys bound to their mutation and input


async def test_idempotency_key_reused_for_another_mutation_or_input_is_bad_user_input(api: Api, dsn: str) -> None:
    order_id = await create(api, "cus_1")
    first = {"orderId": order_id, "sku": "A", "quantity": 1, "unitPrice": "1.00", "idempotencyKey": "k-1"}
    added = data(await api.gql(ADD, {"input": first}), "addItem")
    assert data(await api.gql(ADD, {"input": first}), "addItem")["position"] == added["position"]
    after_first = await event_count(dsn)
    for query, input in (
        (ADD, {**first, "quantity": 2}),
        (ADD, {**first, "sku": "B"}),
        (REMOVE, {"orderId": order_id, "sku": "A", "idempotencyKey": "k-1"}),
        (SUBMIT, {"orderId": order_id, "idempotencyKey": "k-1"}),
        (CANCEL, {"orderId": order_id, "reason": "r", "idempotencyKey": "k-1"}),
        (CREATE, {"customerId": "cus_1", "idempotencyKey": "k-1"}),
    ):
        err = error(await api.gql(query, {"input": input}), "BAD_USER_INPUT")
        assert "k-1" in err["message"], err
    assert await event_count(dsn) == after_first
    # the key is per caller: another customer may use the same text
    other = await create(api, "cus_2")
    theirs = {**first, "orderId": other, "sku": "C"}
    assert data(await api.gql(ADD, {"input": theirs}, as_=("cus_2", "customer")), "addItem")["streamVersion"] == 2
    assert await event_count(dsn) == after_first + 2


async def test_concurrent_reuse_of_a_key_with_other_input_appends_one(api: Api, dsn: str) -> None:
    order_id = await create(api, "cus_1")
    inputs = [
        {"orderId": order_id, "sku": f"S{i}", "quantity": 1, "unitPrice": "1.00", "idempotencyKey": "same"}
        for i in range(6)
    ]
    bodies = await asyncio.gather(*(api.gql(ADD, {"input": i}) for i in inputs))
    ok = [b for b in bodies if "errors" not in b]
    refused = [only_error(b) for b in bodies if "errors" in b]
    assert len(ok) == 1
    assert {e["extensions"]["code"] for e in refused} == {"BAD_USER_INPUT"}
    assert await event_count(dsn) == 2


async def test_concurrent_creates_with_one_key_and_other_input_create_one(api: Api, dsn: str) -> None:
    """Each draws its own order id, so they meet only in the append's key check."""
    currencies = ["USD", "EUR", "JPY", "GBP", "CHF", "SEK"]
    inputs = [{"customerId": "cus_1", "currency": c, "idempotencyKey": "new-order"} for c in currencies]
    bodies = await asyncio.gather(*(api.gql(CREATE, {"input": i}) for i in inputs))
    assert len([b for b in bodies if "errors" not in b]) == 1, bodies
    assert {only_error(b)["extensions"]["code"] for b in bodies if "errors" in b} == {"BAD_USER_INPUT"}
    assert await event_count(dsn) == 1


# ---- WebSocket init key case


@pytest.mark.parametrize("key", ["Authorization", "AUTHORIZATION", "authorization"])
async def test_websocket_init_authorization_key_is_case_insensitive(api: Api, key: str) -> None:
    async with GraphQLWS.connect(api.port) as ws:
        await ws.send({"type": "connection_init", "payload": {key: f"Bearer {api.token('cus_1')}"}})
        assert (await ws.receive(None))["type"] == "connection_ack"


async def test_websocket_init_without_a_token_is_still_closed(api: Api) -> None:
    async with GraphQLWS.connect(api.port) as ws:
        await ws.send({"type": "connection_init", "payload": {"Authorisation": f"Bearer {api.token('cus_1')}"}})
        closed = await ws.closed()
        assert isinstance(closed, Closed) and closed.code == 4403
