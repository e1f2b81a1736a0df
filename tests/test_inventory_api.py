"""Products, wallets and trace over real HTTP: staff commands, read models, coded errors."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

from service.container import Services
from service.settings import Settings
from tests.conftest import Api
from tests.relay_support import private_stream_key
from tests.saga_support import deposit, place_order, saga, settled, stock

STAFF = ("staff_1", "staff")
PRODUCT = "sku name price { amount currency } available reserved"
REGISTER = f"""mutation($input: RegisterProductInput!) {{ registerProduct(input: $input) {{
  position product {{ id {PRODUCT} }} }} }}"""
RESTOCK = f"""mutation($input: RestockProductInput!) {{ restockProduct(input: $input) {{
  position product {{ {PRODUCT} }} }} }}"""
DEPOSIT = """mutation($input: DepositFundsInput!) { depositFunds(input: $input) {
  position wallet { customerId balance { amount currency } } } }"""
PRODUCT_QUERY = f"query($sku: String!, $p: String) {{ product(sku: $sku, consistentWith: $p) {{ {PRODUCT} }} }}"
WALLET_QUERY = """query($c: ID!, $p: String) { wallet(customerId: $c, consistentWith: $p) {
  customerId balance { amount currency } } }"""
TRACE = """query($c: String!) { trace(correlationId: $c) {
  id type streamId version position metadata { correlationId causationId service } } }"""


@pytest.fixture
def settings() -> Settings:
    return Settings(jwt_secret="test-secret-0123456789abcdef0123456789abcdef", run_projections=False, run_relay=False, consistency_timeout=5.0)


def code(result: dict) -> str:  # type: ignore[type-arg]
    return result["errors"][0]["extensions"]["code"]  # type: ignore[no-any-return]


async def test_staff_registers_and_restocks_and_the_read_model_follows(api: Api, projections: None) -> None:
    registered = await api.gql(
        REGISTER, {"input": {"sku": "SKU-1", "name": "Widget", "price": "2.5", "initialStock": 5}}, as_=STAFF
    )
    product = registered["data"]["registerProduct"]["product"]
    assert product == {
        "id": "product-SKU-1", "sku": "SKU-1", "name": "Widget", "price": {"amount": "2.50", "currency": "USD"},
        "available": 5, "reserved": 0,
    }
    restocked = await api.gql(RESTOCK, {"input": {"sku": "SKU-1", "quantity": 3}}, as_=STAFF)
    position = restocked["data"]["restockProduct"]["position"]
    assert restocked["data"]["restockProduct"]["product"]["available"] == 8
    read = await api.gql(PRODUCT_QUERY, {"sku": "SKU-1", "p": position})  # a customer may read the catalog
    assert "errors" not in read and "extensions" not in read
    assert read["data"]["product"] == {**restocked["data"]["restockProduct"]["product"]}
    node = await api.gql('{ node(id: "product-SKU-1") { id ... on Product { sku available } } }')
    assert node["data"]["node"] == {"id": "product-SKU-1", "sku": "SKU-1", "available": 8}
    missing = await api.gql('{ node(id: "product-NOPE") { id } }')
    assert code(missing) == "NOT_FOUND" and missing["data"]["node"] is None


@pytest.mark.parametrize(
    ("mutation", "variables", "expected"),
    [
        (REGISTER, {"sku": "A", "name": "A", "price": "-1"}, "BAD_USER_INPUT"),
        (REGISTER, {"sku": "A", "name": "A", "price": "1.001"}, "BAD_USER_INPUT"),
        (REGISTER, {"sku": "A", "name": "A", "price": "NaN"}, "BAD_USER_INPUT"),
        (REGISTER, {"sku": "A", "name": "A", "price": "1", "currency": "ABC"}, "BAD_USER_INPUT"),
        (REGISTER, {"sku": "A", "name": "A", "price": "1", "initialStock": -1}, "BAD_USER_INPUT"),
        (REGISTER, {"sku": "bad sku!", "name": "A", "price": "1"}, "BAD_USER_INPUT"),
        (REGISTER, {"sku": "A", "name": " ", "price": "1"}, "BAD_USER_INPUT"),
        (RESTOCK, {"sku": "NOPE", "quantity": 1}, "NOT_FOUND"),
        (RESTOCK, {"sku": "EXISTS", "quantity": 0}, "BAD_USER_INPUT"),
        (REGISTER, {"sku": "EXISTS", "name": "again", "price": "1"}, "RULE_VIOLATION"),
        (DEPOSIT, {"customerId": "cus_1", "amount": "0"}, "BAD_USER_INPUT"),
        (DEPOSIT, {"customerId": "cus_1", "amount": "abc"}, "BAD_USER_INPUT"),
        (DEPOSIT, {"customerId": "cus_1", "amount": "1", "currency": "EUR"}, "RULE_VIOLATION"),
        (DEPOSIT, {"customerId": "cus 1", "amount": "1"}, "BAD_USER_INPUT"),
    ],
)
async def test_bad_commands_get_their_code_and_append_nothing(
    api: Api, services: Services, mutation: str, variables: dict, expected: str  # type: ignore[type-arg]
) -> None:
    await stock(services, EXISTS=1)
    await deposit(services, "cus_1", "1.00")
    head = await services.reader.head_position()
    result = await api.gql(mutation, {"input": variables}, as_=STAFF)
    assert code(result) == expected, result
    assert result.get("data") is None  # absent when the variables themselves are refused
    assert await services.reader.head_position() == head


@pytest.mark.parametrize("role", [("cus_1", "customer"), ("svc_1", "service")])
async def test_only_staff_may_command_inventory_and_funds(api: Api, services: Services, role: tuple[str, str]) -> None:
    await stock(services, EXISTS=1)
    for mutation, variables in (
        (REGISTER, {"sku": "A", "name": "A", "price": "1"}),
        (RESTOCK, {"sku": "EXISTS", "quantity": 1}),
        (DEPOSIT, {"customerId": "cus_1", "amount": "5.00"}),
    ):
        result = await api.gql(mutation, {"input": variables}, as_=role)
        assert code(result) == "FORBIDDEN"
    assert await services.reader.head_position() == 1


async def test_wallets_are_seen_by_their_owner_and_staff_only(api: Api, projections: None) -> None:
    deposited = await api.gql(DEPOSIT, {"input": {"customerId": "cus_1", "amount": "12.5"}}, as_=STAFF)
    payload = deposited["data"]["depositFunds"]
    assert payload["wallet"] == {"customerId": "cus_1", "balance": {"amount": "12.50", "currency": "USD"}}
    own = await api.gql(WALLET_QUERY, {"c": "cus_1", "p": payload["position"]}, as_=("cus_1", "customer"))
    assert own["data"]["wallet"] == payload["wallet"]
    staff = await api.gql(WALLET_QUERY, {"c": "cus_1", "p": payload["position"]}, as_=STAFF)
    assert staff["data"]["wallet"] == payload["wallet"]
    other = await api.gql(WALLET_QUERY, {"c": "cus_1"}, as_=("cus_2", "customer"))
    assert code(other) == "NOT_FOUND" and other["data"]["wallet"] is None
    missing = await api.gql(WALLET_QUERY, {"c": "cus_9"}, as_=STAFF)
    assert code(missing) == "NOT_FOUND"
    unknown = await api.gql(PRODUCT_QUERY, {"sku": "NOPE"})
    assert code(unknown) == "NOT_FOUND" and unknown["data"]["product"] is None
    unauthenticated = await api.gql(PRODUCT_QUERY, {"sku": "NOPE"}, as_=None)
    assert code(unauthenticated) == "UNAUTHENTICATED"


async def test_many_products_in_one_operation_read_in_one_statement(api: Api, services: Services, projections: None) -> None:
    await stock(services, A=1, B=2, C=3)
    head = str(await services.reader.head_position())
    query = "query($p: String) { " + " ".join(
        f'{alias}: product(sku: "{alias.upper()}", consistentWith: $p) {{ available }}' for alias in ("a", "b", "c")
    ) + " }"
    result = await api.gql(query, {"p": head})
    assert result["data"] == {"a": {"available": 1}, "b": {"available": 2}, "c": {"available": 3}}


async def test_trace_returns_the_flow_in_causal_order(api: Api, services: Services, redis_url: str) -> None:
    client = redis.from_url(redis_url)
    key = private_stream_key()
    try:
        await stock(services, A=5)
        await deposit(services, "cus_1", "10.00")
        async with saga(services, client, key):
            await place_order(services, "ord_1", {"A": (1, "4.00")}, correlation_id="flow-9")
            await settled(services, "ord_1")
    finally:
        await client.delete(key)
        await client.aclose()
    staff = (await api.gql(TRACE, {"c": "flow-9"}, as_=STAFF))["data"]["trace"]
    types = [e["type"] for e in staff]
    assert types[:4] == ["order.submitted.v1", "inventory.reserved.v1", "payment.charged.v1", "order.completed.v1"]
    seen: set[str] = set()
    for event in staff:  # every cause comes before its effects
        assert event["metadata"]["correlationId"] == "flow-9"
        if seen:
            assert event["metadata"]["causationId"] in seen
        seen.add(event["id"])
    assert [int(e["position"]) for e in staff] == sorted(int(e["position"]) for e in staff)
    own = (await api.gql(TRACE, {"c": "flow-9"}, as_=("cus_1", "customer")))["data"]["trace"]
    assert [e["streamId"] for e in own] == ["order-ord_1", "wallet-cus_1", "order-ord_1"]
    assert (await api.gql(TRACE, {"c": "flow-9"}, as_=("cus_2", "customer")))["data"]["trace"] == []
