"""The HTTP fast path (`api.operations`, compiled plans) against strawberry's own execution
(what the WebSocket transport runs), on the real schema with the same context: the README
tour's and the suite's documents, then a generated corpus (hypothesis-graphql), each must
give identical `data` and `errors`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from graphql import ValueNode
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import nodes, queries

from api.context import Context
from api.operations import GraphQLRequest, Operations
from api.schema import ApiSchema, build_schema
from compat.strawberry import graphql_schema
from service.container import Services
from service.context import Principal, Role
from service.projections import run_projections
from service.settings import Settings

STAFF = Principal("staff_1", Role.STAFF)
CUSTOMER = Principal("cus_1", Role.CUSTOMER)

SEED = [  # the README tour, as staff then as the customer
    (STAFF, 'mutation { registerProduct(input: {sku: "MUG", name: "Mug", price: "9.99", initialStock: 10})'
     " { product { sku available } position } depositFunds(input: {customerId: \"cus_1\", amount: \"50.00\"})"
     " { wallet { balance { amount currency } } position } }"),
    (CUSTOMER, 'mutation { createOrder(input: {customerId: "cus_1", orderId: "ord_diff1"}) { order { id } position } }'),
    (CUSTOMER, 'mutation { first: addItem(input: {orderId: "ord_diff1", sku: "MUG", quantity: 2, unitPrice: "9.99"})'
     ' { position } second: addItem(input: {orderId: "ord_diff1", sku: "MUG", quantity: 1, unitPrice: "9.99",'
     ' discount: "1.00"}) { position } }'),
    (STAFF, 'mutation { createOrder(input: {customerId: "cus_2", orderId: "ord_diff2"}) { position } }'),
    # other currencies' digits, a line that costs nothing, a cancelled order with its reason
    (STAFF, 'mutation { a: createOrder(input: {customerId: "cus_1", orderId: "ord_diff3", currency: "JPY"}) { position }'
     ' b: addItem(input: {orderId: "ord_diff3", sku: "MUG", quantity: 3, unitPrice: "500"}) { position }'
     ' c: addItem(input: {orderId: "ord_diff3", sku: "CUP", quantity: 1, unitPrice: "7", discount: "7"}) { position }'
     ' d: createOrder(input: {customerId: "cus_1", orderId: "ord_diff4", currency: "KWD"}) { position }'
     ' e: addItem(input: {orderId: "ord_diff4", sku: "MUG", quantity: 2, unitPrice: "1.5"}) { position }'
     ' f: cancelOrder(input: {orderId: "ord_diff4", reason: "changed my mind"}) { position } }'),
]

DOCUMENTS = [  # what the README and the suite send (reads, and refusals that write nothing)
    "{ __typename }",
    "{ headPosition }",
    '{ order(id: "ord_diff1") { id customerId status version currency total { amount currency }'
    " lines { sku quantity unitPrice { amount } discount { amount } lineTotal { amount } } } }",
    '{ order(id: "ord_diff2") { id status } }',  # another customer's: NOT_FOUND or FORBIDDEN
    '{ order(id: "ord_missing") { id } }',
    '{ order(id: "") { id } }',
    "{ orders(first: 5) { edges { cursor node { id status total { amount } lines { sku } } }"
    " pageInfo { hasNextPage endCursor } } }",
    '{ orders(first: 1, after: "not-a-cursor") { edges { cursor } } }',
    '{ orders(first: 1001) { edges { cursor } } }',
    '{ orders(customerId: "cus_2") { edges { node { id } } } }',
    '{ stream(streamId: "order-ord_diff1") { version type data recordedAt } }',
    '{ trace(correlationId: "none") { streamId type data metadata { causationId userId } } }',
    "{ events(first: 3) { edges { cursor node { type streamId version } } pageInfo { hasNextPage } } }",
    '{ orderAt(id: "ord_diff1", version: 2) { id version total { amount } lines { sku quantity } } }',
    '{ orderAt(id: "ord_diff1", at: "2000-01-01T00:00:00Z") { id } }',
    '{ node(id: "ord_diff1") { id ... on Order { status } } }',
    '{ product(sku: "MUG") { sku name available price { amount } } }',
    "{ projections { name } }",
    "query Named($id: ID!) { order(id: $id) { id total { amount } } }",
    'mutation { addItem(input: {orderId: "ord_missing", sku: "MUG", quantity: 1, unitPrice: "9.99"}) { position } }',
    'mutation { addItem(input: {orderId: "ord_diff1", sku: "MUG", quantity: 0, unitPrice: "9.99"}) { position } }',
    '{ a: order(id: "ord_diff1") { id } b: order(id: "ord_diff1") { id status } }',
    "{ ...Q } fragment Q on Query { headPosition }",
    # list pages: every field, aliases, fragments, __typename inside the list, filters, waits
    "{ orders(first: 10) { edges { cursor node { __typename id customerId status currency version cancellationReason"
    " createdAt updatedAt total { amount currency __typename } lines { __typename sku quantity unitPrice { amount currency }"
    " discount { amount } lineTotal { amount currency } } } } pageInfo { hasNextPage endCursor } } }",
    "{ page: orders(first: 3) { e: edges { c: cursor n: node { ...O lines { ...L } ... on Node { id } } }"
    " info: pageInfo { more: hasNextPage } } } fragment O on Order { i: id total { a: amount } t: total { c: currency } }"
    " fragment L on OrderLine { s: sku q: quantity lineTotal { amount } again: lineTotal { amount } }",
    "{ orders(first: 2, status: CANCELLED) { edges { node { id cancellationReason lines { sku } } } } }",
    '{ orders(customerId: "cus_1", consistentWith: "1") { edges { node { id version } } pageInfo { endCursor } } }',
    '{ orders(first: 1, consistentWith: "x") { edges { cursor } } }',
    '{ orders(first: 0) { edges { cursor } } }',
    '{ order(id: "ord_diff3", consistentWith: "1") { id currency total { amount } lines { sku lineTotal { amount } } } }',
    '{ order(id: "ord_diff4") { status cancellationReason total { amount } lines { unitPrice { amount } } } }',
]
VARIABLES: dict[str, Any] = {"id": "ord_diff1"}


@pytest.fixture
async def seeded(services: Services, settings: Settings) -> ApiSchema:
    schema = build_schema(settings)
    stop = asyncio.Event()
    projecting = asyncio.create_task(run_projections(services, stop))
    try:
        last = ""
        for principal, mutation in SEED:
            outcome = await run_over_http(schema, services, principal, mutation)
            assert "errors" not in outcome, outcome
            last = max((v["position"] for v in outcome["data"].values()), key=int)
        caught_up = f'{{ order(id: "ord_diff1", consistentWith: "{last}") {{ id }} }}'
        assert "extensions" not in await run_over_http(schema, services, STAFF, caught_up)
    finally:
        stop.set()  # read models stay as they are while both paths read them
        await projecting
    return schema


def context(services: Services, principal: Principal | None) -> Context:
    return Context(services=services, correlation_id="cid-diff", authenticated=principal)


async def run_over_http(
    schema: ApiSchema, services: Services, principal: Principal | None, query: str
) -> dict[str, Any]:
    operations = Operations(schema)
    document = operations.document(query)
    assert not isinstance(document, Exception), query
    request = GraphQLRequest(query, VARIABLES if "$id" in query else None)
    return (await operations.run(request, document, context(services, principal))).body


async def run_by_strawberry(
    schema: ApiSchema, services: Services, principal: Principal | None, query: str
) -> dict[str, Any]:
    variables = VARIABLES if "$id" in query else None
    result = await schema.strawberry.execute(query, variable_values=variables, context_value=context(services, principal))
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [e.formatted for e in result.errors]
    return body


async def assert_same(schema: ApiSchema, services: Services, principal: Principal | None, query: str) -> None:
    over_http = await run_over_http(schema, services, principal, query)
    by_strawberry = await run_by_strawberry(schema, services, principal, query)
    assert over_http.get("data") == by_strawberry.get("data"), query
    assert bool(over_http.get("errors")) == bool(by_strawberry.get("errors")), query
    assert settled(over_http) == settled(by_strawberry), query


def settled(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The errors that do not depend on timing, in path order. Sibling fields resolve
    concurrently, so their errors come in the order they finish; and once a null has
    propagated over an object, graphql-core keeps only the errors of its fields that
    finished before (either path does): kept are the errors of fields whose parent
    object is in `data`, and those without a path."""
    kept = []
    for error in body.get("errors") or []:
        parent: Any = body.get("data")
        for key in (error.get("path") or [None])[:-1]:
            parent = None if parent is None else parent[key]
        if error.get("path") is None or parent is not None:
            kept.append(error)
    return sorted(kept, key=lambda e: (str(e.get("path")), e["message"]))


@pytest.mark.parametrize("principal", [STAFF, CUSTOMER, None], ids=["staff", "customer", "anonymous"])
async def test_the_suites_documents_give_what_strawberry_gives(
    seeded: ApiSchema, services: Services, principal: Principal | None
) -> None:
    for query in DOCUMENTS:
        await assert_same(seeded, services, principal, query)


def generated_documents(schema: ApiSchema, count: int) -> list[str]:
    """A bounded corpus of valid queries on the real schema (read-only: no mutations)."""
    ids = st.sampled_from(["ord_diff1", "ord_diff2", "ord_missing", "cus_1", "MUG", ""])
    scalars: dict[str, st.SearchStrategy[ValueNode]] = {
        "ID": ids.map(nodes.String),
        "String": st.sampled_from(["MUG", "order-ord_diff1", "", "x"]).map(nodes.String),
        "Int": st.sampled_from([0, 1, 2, 20, 101]).map(nodes.Int),
        "Decimal": st.sampled_from(["1.00", "x"]).map(nodes.String),
        "DateTime": st.sampled_from(["2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"]).map(nodes.String),
        "JSON": st.just("{}").map(nodes.String),
    }
    found: list[str] = []

    @settings(
        max_examples=count, deadline=None, database=None, phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(query=queries(graphql_schema(schema.strawberry), custom_scalars=scalars))
    def collect(query: str) -> None:
        found.append(query)  # no String is a position: a `consistentWith` never waits

    collect()
    return list(dict.fromkeys(found))


async def test_a_generated_corpus_gives_what_strawberry_gives(seeded: ApiSchema, services: Services) -> None:
    corpus = generated_documents(seeded, 150)
    assert len(corpus) > 50
    for principal in (STAFF, CUSTOMER):
        for query in corpus:
            await assert_same(seeded, services, principal, query)


@pytest.mark.parametrize("principal", [STAFF, CUSTOMER], ids=["staff", "customer"])
async def test_each_page_of_a_list_gives_what_strawberry_gives(
    seeded: ApiSchema, services: Services, principal: Principal
) -> None:
    query = "{ orders(first: 2%s) { edges { cursor node { id total { amount } lines { sku } } } pageInfo { hasNextPage endCursor } } }"
    after, totals = "", {}
    while True:
        await assert_same(seeded, services, principal, query % after)
        page = (await run_over_http(seeded, services, principal, query % after))["data"]["orders"]
        totals.update({e["node"]["id"]: e["node"]["total"]["amount"] for e in page["edges"]})
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = f', after: "{page["pageInfo"]["endCursor"]}"'
    # newest first; each currency's digits (JPY none, KWD three); the customer sees its own
    expected = {"ord_diff4": "3.000", "ord_diff3": "1500", "ord_diff2": "0.00", "ord_diff1": "28.97"}
    if principal is CUSTOMER:
        del expected["ord_diff2"]
    assert list(totals.items()) == list(expected.items())
