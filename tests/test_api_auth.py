"""The auth matrix over real HTTP: no token, bad tokens, the wrong customer, staff."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from api.auth import mint_token
from tests.conftest import Api
from tests.test_api_orders import ADD, CANCEL, CREATE, REMOVE, SUBMIT, create, data, error
from tests.test_http_protocol import event_count


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def bad_credentials(api: Api) -> dict[str, dict[str, str]]:
    now = int(time.time())
    return {
        "bad signature": bearer(mint_token("another-secret-of-recommended-length-0123456789", "cus_1", "customer")),
        "expired": bearer(mint_token(api.secret, "cus_1", "customer", ttl=-60)),
        "garbage": bearer("not.a.jwt"),
        "wrong scheme": {"Authorization": f"Basic {api.token()}"},
        "bearer without token": {"Authorization": "Bearer"},
        "unknown role": bearer(jwt.encode({"sub": "x", "role": "admin", "exp": now + 60}, api.secret, "HS256")),
        "no subject": bearer(jwt.encode({"role": "staff", "exp": now + 60}, api.secret, "HS256")),
        "alg none": bearer(jwt.encode({"sub": "x", "role": "staff"}, None, "none")),  # type: ignore[arg-type]
    }


@pytest.mark.parametrize(
    "operation",
    [
        ("{ headPosition }", None),
        ('{ events { edges { cursor } } }', None),
        ('{ stream(streamId: "order-ord_1") { id } }', None),
        ('{ trace(correlationId: "x") { id } }', None),
        ('{ orderAt(id: "ord_1") { id } }', None),
        ('{ node(id: "ord_1") { id } }', None),
        (CREATE, {"input": {"customerId": "cus_1"}}),
        (ADD, {"input": {"orderId": "ord_1", "sku": "A", "quantity": 1, "unitPrice": "1"}}),
        (REMOVE, {"input": {"orderId": "ord_1", "sku": "A"}}),
        (SUBMIT, {"input": {"orderId": "ord_1"}}),
        (CANCEL, {"input": {"orderId": "ord_1", "reason": "x"}}),
    ],
)
async def test_every_operation_needs_a_valid_token(api: Api, dsn: str, operation: tuple) -> None:  # type: ignore[type-arg]
    query, variables = operation
    cases = {"no token": {}, **bad_credentials(api)}
    for case, headers in cases.items():
        body = await api.gql(query, variables, as_=None, headers=headers)
        [err] = body["errors"]
        assert err["extensions"] == {"code": "UNAUTHENTICATED"}, (case, body)
        assert not any((body["data"] or {}).values()), case  # null, or {field: null}
    assert await event_count(dsn) == 0


async def test_expired_and_bad_signature_say_why(api: Api) -> None:
    creds = bad_credentials(api)
    expired = await api.gql("{ headPosition }", as_=None, headers=creds["expired"])
    assert "expired" in expired["errors"][0]["message"]
    forged = await api.gql("{ headPosition }", as_=None, headers=creds["bad signature"])
    assert "signature" in forged["errors"][0]["message"].lower()


async def test_meta_fields_need_no_token_even_with_a_bad_one(api: Api) -> None:
    for headers in ({}, bad_credentials(api)["expired"]):
        body = await api.gql("{ __typename __schema { queryType { name } } }", as_=None, headers=headers)
        assert body == {"data": {"__typename": "Query", "__schema": {"queryType": {"name": "Query"}}}}


async def test_customer_cannot_create_for_another_customer(api: Api, dsn: str) -> None:
    body = await api.gql(CREATE, {"input": {"customerId": "cus_2"}}, as_=("cus_1", "customer"))
    error(body, "FORBIDDEN")
    assert await event_count(dsn) == 0
    staff = await api.gql(CREATE, {"input": {"customerId": "cus_2"}}, as_=("ops", "staff"))
    assert data(staff, "createOrder")["order"]["customerId"] == "cus_2"
    service = await api.gql(CREATE, {"input": {"customerId": "cus_3"}}, as_=("billing", "service"))
    assert data(service, "createOrder")["events"][0]["metadata"]["userId"] == "billing"


async def test_another_customers_order_is_not_found_never_data(api: Api, dsn: str) -> None:
    order_id = await create(api, "cus_1")
    data(await api.gql(ADD, {"input": {"orderId": order_id, "sku": "A", "quantity": 1, "unitPrice": "1"}}), "addItem")
    before = await event_count(dsn)
    intruder = ("cus_2", "customer")
    for query, variables in (
        (ADD, {"input": {"orderId": order_id, "sku": "B", "quantity": 1, "unitPrice": "1"}}),
        (REMOVE, {"input": {"orderId": order_id, "sku": "A"}}),
        (SUBMIT, {"input": {"orderId": order_id}}),
        (CANCEL, {"input": {"orderId": order_id, "reason": "mine now"}}),
    ):
        err = error(await api.gql(query, variables, as_=intruder), "NOT_FOUND")
        assert "cus_1" not in str(err)
    for query in (
        f'{{ orderAt(id: "{order_id}") {{ id customerId }} }}',
        f'{{ stream(streamId: "order-{order_id}") {{ id data }} }}',
    ):
        body = await api.gql(query, as_=intruder)
        assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert not any((body["data"] or {}).values())
    events = (await api.gql(f'{{ stream(streamId: "order-{order_id}") {{ id correlation: metadata {{ correlationId }} }} }}'))["data"]["stream"]
    node = await api.gql(f'{{ node(id: "{events[0]["id"]}") {{ id }} }}', as_=intruder)
    assert node["errors"][0]["extensions"]["code"] == "NOT_FOUND" and node["data"] == {"node": None}
    trace = await api.gql(
        "query($c: String!) { trace(correlationId: $c) { id } }",
        {"c": events[0]["correlation"]["correlationId"]},
        as_=intruder,
    )
    assert trace == {"data": {"trace": []}}
    log = await api.gql("{ events { edges { node { streamId } } } }", as_=intruder)
    assert log == {"data": {"events": {"edges": []}}}
    assert await event_count(dsn) == before


async def test_staff_sees_and_commands_everything(api: Api) -> None:
    first = await create(api, "cus_1")
    second = await create(api, "cus_2")
    staff = ("ops", "staff")
    for order_id in (first, second):
        data(await api.gql(ADD, {"input": {"orderId": order_id, "sku": "A", "quantity": 1, "unitPrice": "1"}}, as_=staff), "addItem")
    log = (await api.gql("{ events { edges { node { streamId } } } }", as_=staff))["data"]["events"]["edges"]
    assert {e["node"]["streamId"] for e in log} == {f"order-{first}", f"order-{second}"}
    own = (await api.gql("{ events { edges { node { streamId } } } }", as_=("cus_2", "customer")))["data"]["events"]["edges"]
    assert {e["node"]["streamId"] for e in own} == {f"order-{second}"}
    seen = await api.gql(f'{{ orderAt(id: "{first}") {{ customerId lines {{ sku }} }} }}', as_=staff)
    assert seen == {"data": {"orderAt": {"customerId": "cus_1", "lines": [{"sku": "A"}]}}}


async def test_a_remembered_token_stops_working_when_it_expires(api: Api) -> None:
    expires = int(time.time()) + 2
    token = jwt.encode({"sub": "cus_1", "role": "customer", "exp": expires}, api.secret, "HS256")
    first = await api.gql("{ headPosition }", as_=None, headers=bearer(token))
    assert first == {"data": {"headPosition": "0"}}  # verified, and now remembered
    await asyncio.sleep(max(0.0, expires + 0.05 - time.time()))
    later = await api.gql("{ headPosition }", as_=None, headers=bearer(token))
    assert later["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "expired" in later["errors"][0]["message"]
