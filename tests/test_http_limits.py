"""Abuse limits over real HTTP: depth (introspection included), aliases, tokens; never a hang.

The defaults are the contract's: depth 15, 30 aliases, 5,000 tokens.
"""

from __future__ import annotations

from graphql import get_introspection_query

from tests.conftest import Api
from tests.test_http_protocol import event_count

TOO_COMPLEX = "QUERY_TOO_COMPLEX"


def codes(body: dict) -> list[str]:  # type: ignore[type-arg]
    return [error["extensions"]["code"] for error in body.get("errors", [])]


def nested_of_type(levels: int) -> str:
    """`__type { ofType { ofType ... { name } } }`: depth 1 + levels."""
    inner = "name"
    for _ in range(levels):
        inner = f"ofType {{ {inner} }}"
    return f'{{ __type(name: "Order") {{ {inner} }} }}'


async def test_graphiql_introspection_query_fits(api: Api) -> None:
    # the query GraphiQL sends (graphql-js 16: TypeRef nests ofType 9 deep; depth 14)
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    body = await api.gql(query, as_=None)
    assert "errors" not in body
    names = {t["name"] for t in body["data"]["__schema"]["types"]}
    assert {"Order", "Event", "Decimal", "DateTime", "JSON"} <= names


async def test_depth_counts_introspection_fields(api: Api) -> None:
    # strawberry's own QueryDepthLimiter ignores these; unbounded `__type` nesting is a
    # classic way around depth limits
    fits = await api.gql(nested_of_type(14), as_=None)  # depth 15
    assert fits == {"data": {"__type": {"ofType": None}}}
    deep = await api.gql(nested_of_type(15), as_=None)  # depth 16
    assert codes(deep) == [TOO_COMPLEX] and "data" not in deep
    assert "maximum operation depth of 15 (it has 16)" in deep["errors"][0]["message"]
    # graphql-core's own rule against `fields { type { fields ... } }` is coded the same
    cycle = '{ __type(name: "Order") { fields { type { fields { type { fields { type { fields { name } } } } } } } } }'
    assert codes(await api.gql(cycle, as_=None)) == [TOO_COMPLEX]


async def test_depth_is_measured_through_fragments(api: Api) -> None:
    # fragments are followed, and the deepest path through them counts (1+1+1+13 = 16)
    query = (
        "query { __schema { ...A } } "
        "fragment A on __Schema { types { ...B } } "
        "fragment B on __Type { fields { type { ofType { ofType { ofType { ofType { ofType "
        "{ ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } } } } } }"
    )
    body = await api.gql(query, as_=None)
    assert codes(body) == [TOO_COMPLEX]


async def test_aliases_limit(api: Api) -> None:
    thirty = " ".join(f"a{i}: __typename" for i in range(30))
    assert (await api.gql(f"{{ {thirty} }}", as_=None))["data"]["a29"] == "Query"
    body = await api.gql(f"{{ {thirty} extra: __typename }}", as_=None)
    assert codes(body) == [TOO_COMPLEX]
    assert body["errors"][0]["message"] == "31 aliases found. Allowed: 30"


async def test_aliases_in_spread_fragments_are_counted_per_spread(api: Api) -> None:
    fragment = " ".join(f"a{i}: __typename" for i in range(10))
    query = f"{{ ...F ... on Query {{ ...F }} ... on Query {{ ...F }} ...F }} fragment F on Query {{ {fragment} }}"
    assert codes(await api.gql(query, as_=None)) == [TOO_COMPLEX]


def events_with_types(count: int) -> str:
    types = " ".join(f'"t{i}"' for i in range(count))
    return f"{{ events(first: 1, types: [{types}]) {{ edges {{ cursor }} }} }}"  # count + 18 tokens


async def test_token_limit(api: Api, dsn: str) -> None:
    staff = ("ops", "staff")
    fits = await api.gql(events_with_types(4982), as_=staff)  # exactly 5,000 tokens
    assert fits == {"data": {"events": {"edges": []}}}
    body = await api.gql(events_with_types(4983), as_=staff)
    assert codes(body) == [TOO_COMPLEX] and "5000 tokens" in body["errors"][0]["message"]
    # a mutation past the limit is refused before anything runs
    mutation = "mutation { " + 'createOrder(input: {customerId: "cus_1"}) { position } ' + " ".join(
        ["__typename"] * 5000
    ) + " }"
    refused = await api.gql(mutation)
    assert codes(refused) == [TOO_COMPLEX]
    assert await event_count(dsn) == 0


async def test_quadratic_field_merging_is_refused_not_hung(api: Api) -> None:
    # graphql-core compares same-named fields pairwise and aborts past a budget
    body = await api.gql("{ " + " ".join(["__typename"] * 2000) + " }", as_=None)
    assert codes(body) == [TOO_COMPLEX]


async def test_fragment_fan_out_is_answered_quickly(api: Api) -> None:
    # 40 fragments, each spreading the next twice: 2^40 paths if walked naively
    fragments = [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(40)]
    fragments.append("fragment F40 on Query { __typename }")
    query = "{ ...F0 } " + " ".join(fragments)
    body = await api.gql(query, as_=None)  # the client's 30 s timeout is the hang detector
    assert body == {"data": {"__typename": "Query"}}
    aliased = query.replace("{ __typename }", "{ a: __typename }")
    assert codes(await api.gql(aliased, as_=None)) == [TOO_COMPLEX]
