"""The GraphQL API end to end over real HTTP: the order flow and the coded errors."""

from __future__ import annotations

from tests.conftest import Api

CREATE = """mutation($input: CreateOrderInput!) { createOrder(input: $input) {
  order { id customerId status currency total { amount currency } version createdAt }
  streamVersion position events { id type position streamId version data metadata { correlationId userId service } }
} }"""
ADD = """mutation($input: AddItemInput!) { addItem(input: $input) {
  order { lines { sku quantity unitPrice { amount } discount { amount } lineTotal { amount } } total { amount } version }
  streamVersion position } }"""


async def test_create_add_and_read_events(api: Api) -> None:
    created = await api.gql(CREATE, {"input": {"customerId": "cus_1"}}, headers={"X-Correlation-ID": "flow-1"})
    payload = created["data"]["createOrder"]
    order_id = payload["order"]["id"]
    assert payload["order"]["status"] == "DRAFT" and payload["order"]["total"] == {"amount": "0.00", "currency": "USD"}
    assert payload["events"][0]["type"] == "order.created.v2"
    assert payload["events"][0]["metadata"] == {"correlationId": "flow-1", "userId": "cus_1", "service": "eventgraph"}
    for sku, price in (("A", "0.10"), ("B", "0.20")):
        added = await api.gql(ADD, {"input": {"orderId": order_id, "sku": sku, "quantity": 1, "unitPrice": price}})
    assert added["data"]["addItem"]["order"]["total"] == {"amount": "0.30"}
    assert added["data"]["addItem"]["streamVersion"] == 3 and added["data"]["addItem"]["position"] == "3"
    page = await api.gql("{ events(first: 2) { edges { cursor node { type } } pageInfo { hasNextPage endCursor } } }")
    assert page["data"]["events"]["pageInfo"] == {"hasNextPage": True, "endCursor": "2"}


async def test_errors_carry_contract_codes(api: Api) -> None:
    created = await api.gql(CREATE, {"input": {"customerId": "cus_1"}})
    order_id = created["data"]["createOrder"]["order"]["id"]
    stale = await api.gql(
        ADD, {"input": {"orderId": order_id, "sku": "A", "quantity": 1, "unitPrice": "1", "expectedVersion": 5}}
    )
    assert stale["errors"][0]["extensions"] == {"code": "CONCURRENCY_CONFLICT", "expectedVersion": 5, "actualVersion": 1}
    bad = await api.gql(ADD, {"input": {"orderId": order_id, "sku": "A", "quantity": 0, "unitPrice": "1"}})
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    foreign = await api.gql(ADD, {"input": {"orderId": order_id, "sku": "A", "quantity": 1, "unitPrice": "1"}}, as_=("cus_2", "customer"))
    assert foreign["errors"][0]["extensions"]["code"] == "NOT_FOUND" and foreign["data"] is None
    anonymous = await api.gql("{ headPosition }", as_=None)
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    meta = await api.gql("{ __typename }", as_=None)
    assert meta == {"data": {"__typename": "Query"}}
    empty = await api.gql("mutation($id: ID!) { submitOrder(input: {orderId: $id}) { position } }", {"id": order_id})
    assert empty["errors"][0]["extensions"]["code"] == "RULE_VIOLATION"
    head = await api.gql("{ headPosition }")
    assert head["data"]["headPosition"] == "1"
